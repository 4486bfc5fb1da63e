"""Battles: two hidden models drawn for a scene; a battle's view and its episodes' replays."""

from dataclasses import dataclass

from vlarena.arena.board import Board
from vlarena.arena.pairing import draw_pair, pair_probabilities
from vlarena.arena.schemas import BattleOut, Replay
from vlarena.arena.storage import crud
from vlarena.arena.usecases.context import UseCase, available_models
from vlarena.arena.views import replay
from vlarena.errors import ExecutionUnavailableError, InvalidRequestError, UnknownNameError


@dataclass(frozen=True, eq=False)
class Battles(UseCase):
    """Drawing a battle's models, a battle's view, its episodes' replays."""

    board: Board  # the pair draw follows its uncertainty

    async def create(self, session_id: str, scene_id: str, ip: str) -> BattleOut:
        await self.limiter.hit("battle", session_id, ip)
        if scene_id not in self.settings.scene_ids:
            raise InvalidRequestError(
                f"unknown scene {scene_id!r}; valid: {', '.join(self.settings.scene_ids)}"
            )
        model_a, model_b = await self._draw_models()
        async with self.db.begin() as s:
            battle = crud.add_battle(s, session_id, scene_id, model_a, model_b)
        return self.views.battle(battle)

    async def get(self, battle_id: str) -> BattleOut:
        async with self.db() as s:
            return self.views.battle(await crud.get_battle(s, battle_id))

    async def replay(self, battle_id: str, number: int, side: str) -> Replay:
        async with self.db() as s:
            battle = await crud.get_battle(s, battle_id)
            episode = await crud.get_episode(s, battle_id, number, side)
        if episode is None:
            raise UnknownNameError("episode", f"{battle_id}/{number}/{side}", [])
        return replay(battle, number, episode)

    async def _draw_models(self) -> tuple[str, str]:
        """Two different models, in random order: a pair is drawn with a weight that grows
        with how much one more vote on it would narrow the leaderboard's intervals, and every
        pair keeps a floor. Random, so the public leaderboard never tells which pair an open
        battle holds."""
        available = await available_models(self.client, self.settings.model_ids)
        if len(available) < 2:
            raise ExecutionUnavailableError(
                f"a battle needs two models; the execution service offers {len(available)} "
                "of those configured",
                retry_after_s=60.0,
            )
        fit = await self.board.fit()
        return draw_pair(self.rng, pair_probabilities(available, fit))
