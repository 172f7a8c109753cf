"""The audit unit's service: HTTP API and reviewer pages on the pipeline's outputs.

``create_app`` builds the FastAPI application; ``riskml serve`` runs it with uvicorn.
"""

from riskml.serve.app import create_app

__all__ = ["create_app"]
