/** Typed calls to the arena API (same origin); the shapes come from its OpenAPI schema. */
import type { components } from "./api.gen";

type Schemas = components["schemas"];
export type ErrorBody = Schemas["ErrorBody"];
export type Battle = Schemas["BattleOut"];
export type TurnOut = Schemas["TurnOut"];
export type EpisodeOut = Schemas["EpisodeOut"];
export type Replay = Schemas["Replay"];
export type Scene = Schemas["SceneOut"];
export type Choice = Schemas["VoteCreate"]["choice"];
export type Interval = Schemas["Interval"];
export type Rating = Schemas["RatingOut"];
export type Leaderboard = Schemas["LeaderboardOut"];
type Session = Schemas["SessionOut"];

export class ApiError extends Error {
  constructor(readonly status: number, readonly body: ErrorBody) {
    super(`${body.error}: ${body.detail}`);
  }
}

const TOKEN_KEY = "vlarena.token";

async function call<T>(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<T> {
  const token = localStorage.getItem(TOKEN_KEY);
  const reply = await fetch(path, {
    method,
    headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const payload = await reply.json().catch(() => ({ error: "bad_response", detail: reply.statusText }));
  if (!reply.ok) throw new ApiError(reply.status, payload as ErrorBody);
  return payload as T;
}

/** This browser's session (created once, kept in localStorage). */
export async function ensureSession(): Promise<void> {
  if (localStorage.getItem(TOKEN_KEY)) return;
  const session = await call<Session>("POST", "/api/sessions");
  localStorage.setItem(TOKEN_KEY, session.token);
}

export const api = {
  scenes: () => call<Scene[]>("GET", "/api/scenes"),
  battle: (id: string) => call<Battle>("GET", `/api/battles/${id}`),
  newBattle: (sceneId: string) =>
    call<Battle>("POST", "/api/battles", { scene_id: sceneId } satisfies Schemas["BattleCreate"]),
  newTurn: (id: string, instruction: string, key: string) =>
    call<Battle>("POST", `/api/battles/${id}/turns`, { instruction } satisfies Schemas["TurnCreate"],
      { "idempotency-key": key }),
  vote: (id: string, choice: Choice) =>
    call<Battle>("POST", `/api/battles/${id}/vote`, { choice } satisfies Schemas["VoteCreate"]),
  replay: (url: string) => call<Replay>("GET", url),
  leaderboard: () => call<Leaderboard>("GET", "/api/leaderboard"),
};
