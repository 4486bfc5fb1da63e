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
export type Matrix = Schemas["MatrixOut"];
export type ModelCard = Schemas["ModelCardOut"];
export type TaskScore = Schemas["TaskScore"];
export type VoteCreate = Schemas["VoteCreate"];
/** The leaderboard's filters (query parameters); absent: all. */
export interface BoardFilters { task?: string; scene?: string }
type Session = Schemas["SessionOut"];

/** The filters as a query string ("?task=lift"), empty for none: the API's and the page's. */
export function boardQuery(filters: BoardFilters): string {
  const query = new URLSearchParams();
  if (filters.task) query.set("task", filters.task);
  if (filters.scene) query.set("scene", filters.scene);
  const q = query.toString();
  return q ? `?${q}` : "";
}

export class ApiError extends Error {
  constructor(readonly status: number, readonly body: ErrorBody) {
    super(`${body.error}: ${body.detail}`);
  }
}

/** Milliseconds to wait before calling again after a transient failure (a network error, 429, 502–504;
 * the API's `retry_after_s` when it gave one), or null when calling again will not help. */
export function retryDelay(error: unknown, attempt: number): number | null {
  if (error instanceof ApiError) {
    if (![429, 502, 503, 504].includes(error.status)) return null;
    if (typeof error.body.retry_after_s === "number") return error.body.retry_after_s * 1000;
  } else if (!(error instanceof TypeError)) { // fetch rejects with a TypeError when the network fails
    return null;
  }
  return Math.min(500 * 2 ** attempt, 10_000);
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
  vote: (id: string, vote: VoteCreate) => call<Battle>("POST", `/api/battles/${id}/vote`, vote),
  replay: (url: string) => call<Replay>("GET", url),
  leaderboard: (filters: BoardFilters = {}) => call<Leaderboard>("GET", `/api/leaderboard${boardQuery(filters)}`),
  models: () => call<ModelCard[]>("GET", "/api/models"),
};
