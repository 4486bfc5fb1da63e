/** Typed calls to the arena API (same origin). */

export interface ErrorBody { error: string; detail: string }
export interface EpisodeOut { side: "a" | "b"; num_steps: number; replay_url: string; model_id: string | null; success: boolean | null }
export interface TurnOut {
  number: number; instruction: string; seed: number; status: "queued" | "running" | "done" | "failed";
  queue_position: number | null; progress: Record<string, number> | null; max_steps: number;
  error: ErrorBody | null; episodes: EpisodeOut[];
}
export interface Battle {
  battle_id: string; scene_id: string; status: string; turns: TurnOut[]; max_turns: number;
  model_a: string | null; model_b: string | null; vote: string | null;
}
export interface Replay { scene_id: string; initial_qpos: number[]; qpos: number[][]; time: number[]; num_steps: number; model_id: string | null; success: boolean | null }
export interface Scene { scene_id: string; examples: string[] }
export interface Interval { value: number | null; ci_low: number; ci_high: number; n: number }
export interface Rating {
  model: string; rating: number; ci_low: number; ci_high: number; rank: number; elo: number;
  battles: number; wins: number; ties: number; losses: number; sim_success: Interval;
}
export interface Leaderboard { ratings: Rating[]; votes: number; agreement: Interval }

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
  const session = await call<{ token: string }>("POST", "/api/sessions");
  localStorage.setItem(TOKEN_KEY, session.token);
}

export const api = {
  scenes: () => call<Scene[]>("GET", "/api/scenes"),
  battle: (id: string) => call<Battle>("GET", `/api/battles/${id}`),
  newBattle: (sceneId: string) => call<Battle>("POST", "/api/battles", { scene_id: sceneId }),
  newTurn: (id: string, instruction: string, key: string) =>
    call<Battle>("POST", `/api/battles/${id}/turns`, { instruction }, { "idempotency-key": key }),
  vote: (id: string, choice: string) => call<Battle>("POST", `/api/battles/${id}/vote`, { choice }),
  replay: (url: string) => call<Replay>("GET", url),
  leaderboard: () => call<Leaderboard>("GET", "/api/leaderboard"),
};
