"""The arena's HTTP routes, one router per resource; each hands over to a use case."""

from vlarena.arena.routes import battles, board, health, scenes, sessions

ROUTERS = (sessions.router, battles.router, board.router, scenes.router, health.router)
