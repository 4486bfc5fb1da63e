"""The execution service's HTTP routes, thin: each checks nothing itself and hands the request
to the episode service (`execution.episodes`) or the scene assets (`execution.assets`)."""

from fastapi import APIRouter

from vlarena.execution.routes import catalogue, episodes, execute, scenes

api_router = APIRouter()
for module in (execute, episodes, catalogue, scenes):
    api_router.include_router(module.router)
