/** Model cards: what each model is, how it was trained and evaluated, its speed here, its record. */
import { api, type ModelCard, type TaskScore } from "../api";
import { el, errorText, humanCount, pct, provisionalBadge, scroller } from "../ui";
import type { IsCurrent } from "./battle";

export async function modelsPage(root: HTMLElement, isCurrent: IsCurrent): Promise<void> {
  root.replaceChildren();
  const status = el("p", { id: "models-status", role: "status" }, "Loading the model cards…");
  root.append(el("h1", {}, "Models"), status);
  let cards: ModelCard[];
  try {
    cards = await api.models();
  } catch (error) {
    if (isCurrent()) {
      status.textContent = `The model cards could not be loaded: ${errorText(error)}`;
      status.classList.add("error");
    }
    return;
  }
  if (!isCurrent()) return;
  status.textContent = cards.length === 0 ? "No models are configured." : "";
  root.append(
    el("p", { class: "note" }, "Every model that can be drawn into a battle, best rated first. In a battle they stay anonymous until the vote."),
    ...cards.map(card)); // the arena's order: rated by rank and rating, then the rest
}

const slug = (id: string) => id.replace(/[^a-zA-Z0-9_-]/g, "-");

function card(model: ModelCard): HTMLElement {
  const id = `model-${slug(model.model_id)}`;
  const facts = el("dl", { class: "facts" });
  const fact = (term: string, value: Node | string) => facts.append(el("dt", {}, term), el("dd", {}, value));
  fact("Rating here", rating(model));
  fact("Family", model.family ?? "unknown");
  fact("Kind", model.kind);
  fact("Parameters", model.parameters === null ? "unknown"
    : `${humanCount(model.parameters)} (${model.parameters.toLocaleString("en")})`);
  if (model.version) fact("Version", model.version);
  fact("Training", model.trained ?? "not described");
  fact("Latency here", model.latency_ms === null || model.latency_ms === undefined ? "not measured yet"
    : `${model.latency_ms.toFixed(model.latency_ms < 10 ? 1 : 0)} ms median per model call, over ${model.latency_episodes} episode${model.latency_episodes === 1 ? "" : "s"}`);
  fact("License", model.license ?? "not stated");
  fact("Source", source(model.source));
  const section = el("article", { class: "model-card", id, "aria-labelledby": `${id}-title`, "data-model": model.model_id },
    el("h2", { id: `${id}-title` }, model.model_id), facts);
  const evaluation = model.evaluation ?? [];
  section.append(el("h3", {}, "Offline evaluation"));
  if (model.evaluated) section.append(el("p", { class: "note" }, model.evaluated));
  section.append(evaluation.length === 0 ? el("p", {}, "No offline evaluation recorded.")
    : scroller(`Offline evaluation of ${model.model_id}`, evaluationTable(model.model_id, evaluation)));
  return section;
}

function rating(model: ModelCard): Node | string {
  const r = model.rating;
  if (!r) return "not rated yet";
  const text = el("span", { class: "rating" },
    `${r.rating.toFixed(0)} (95% CI ${r.ci_low.toFixed(0)}–${r.ci_high.toFixed(0)}), rank ${r.rank}, `
    + `${r.battles} battle${r.battles === 1 ? "" : "s"}: ${r.wins} won, ${r.ties} tied, ${r.losses} lost`);
  if (r.provisional) text.append(" ", provisionalBadge(null));
  return text;
}

function source(url: string | null | undefined): Node | string {
  if (!url) return "not stated";
  if (/^https?:\/\//.test(url)) return el("a", { href: url, rel: "noopener noreferrer" }, url);
  return url;
}

function evaluationTable(model: string, scores: TaskScore[]): HTMLTableElement {
  const head = el("tr");
  for (const h of ["Task", "Success", "95% interval", "Episodes"]) head.append(el("th", { scope: "col" }, h));
  const body = el("tbody");
  for (const s of scores) {
    body.append(el("tr", {}, el("th", { scope: "row" }, s.task),
      el("td", {}, s.episodes > 0 ? `${pct(s.successes / s.episodes)} (${s.successes}/${s.episodes})` : "–"),
      el("td", {}, `${pct(s.ci_low)}–${pct(s.ci_high)}`),
      el("td", {}, String(s.episodes))));
  }
  return el("table", { class: "evaluation" }, el("caption", {}, `Success of ${model} per task in simulation`), el("thead", {}, head), body);
}
