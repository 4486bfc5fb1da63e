/** What a battle allows next, from its turns and which of them were watched (pure: tested in node). */
import type { Battle, TurnOut } from "./api";

/** The last turn that finished with both episodes. */
export const lastDone = (battle: Battle): TurnOut | undefined =>
  [...battle.turns].reverse().find((t) => t.status === "done");

/** A turn is queued or running: no vote and no other turn until it ends. */
export function turnActive(battle: Battle): boolean {
  const status = battle.turns[battle.turns.length - 1]?.status;
  return status === "queued" || status === "running";
}

/** The newest finished turn has been played through here (true when none has finished). */
export function latestWatched(battle: Battle, watched: ReadonlySet<number>): boolean {
  const done = lastDone(battle);
  return !done || watched.has(done.number);
}

/** A vote can be cast: not voted, no turn active, and a finished turn whose replays were watched. */
export function canVote(battle: Battle, watched: ReadonlySet<number>): boolean {
  return battle.vote === null && !turnActive(battle) && lastDone(battle) !== undefined && latestWatched(battle, watched);
}
