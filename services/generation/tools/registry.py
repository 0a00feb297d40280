"""The one place tools are registered."""

from __future__ import annotations

from copilot.embedding import Embedder
from services.generation.settings import GenerationSettings
from services.generation.tools import Tool, Toolbox
from services.generation.tools.database import QueryDatabase, ReadOnlyDatabase, load_examples
from services.generation.tools.documents import PassageSource, SearchDocuments


def build_toolbox(settings: GenerationSettings, source: PassageSource, embedder: Embedder) -> Toolbox:
    tools: list[Tool] = [SearchDocuments(source, settings.default_top_k, settings.min_relevance)]
    db = settings.database
    if db.url:
        database = ReadOnlyDatabase(db.url, db.statement_timeout_s, db.max_rows)
        examples = load_examples(db.examples_file, database.dialect) if db.examples_file else []
        tools.append(
            QueryDatabase(
                database,
                embedder,
                db.readers,
                db.tenant,
                db.description,
                examples,
                db.schema_tables,
                db.examples,
            )
        )
    return Toolbox(tools)
