"""Evaluation: golden sets, variants, report cards, regression gates, red-team probes and human review.

A client of the public gRPC APIs like any other: it signs in as each golden question's user and asks
through RetrievalService.Search and GenerationService.Answer, so what it measures is what users get.
"""
