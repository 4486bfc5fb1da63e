/** What the reveal says after a vote, as sentences with success badges (pure: tested in node). */
import type { Battle, Choice } from "./api";

/** A piece of a sentence: text, or a badge for a simulated outcome. */
export type Part = string | { success: boolean | null; text: string };

const BADGE = (success: boolean | null | undefined): Part => {
  if (success === true) return { success: true, text: "✓ succeeded" };
  if (success === false) return { success: false, text: "✗ failed" };
  return { success: null, text: "? not judged" };
};

/** The vote as a sentence: "You voted for A." (or how the battle was voted, seen later). */
export function voteSentence(choice: Choice, byYou: boolean): string {
  const you: Record<Choice, string> = {
    a: "You voted for A.", b: "You voted for B.", tie: "You called it a tie.", both_bad: "You voted that both were bad.",
  };
  const them: Record<Choice, string> = {
    a: "This battle was voted for A.", b: "This battle was voted for B.",
    tie: "This battle was voted a tie.", both_bad: "This battle was voted both bad.",
  };
  return (byYou ? you : them)[choice];
}

/** The reveal's lines (each a list of parts); empty before the vote. */
export function revealLines(battle: Battle, byYou: boolean): Part[][] {
  if (battle.vote === null) return [];
  const done = battle.turns.filter((t) => t.status === "done");
  const success = (turn: (typeof done)[number], side: "a" | "b") => turn.episodes.find((e) => e.side === side)?.success;
  const a = battle.model_a ?? "unknown", b = battle.model_b ?? "unknown";
  const lines: Part[][] = [];
  if (done.length === 1) {
    lines.push([`${voteSentence(battle.vote, byYou)} A was ${a} `, BADGE(success(done[0], "a")),
      ` in simulation; B was ${b} `, BADGE(success(done[0], "b")), "."]);
  } else {
    lines.push([`${voteSentence(battle.vote, byYou)} A was ${a}; B was ${b}.`]);
    for (const turn of done) {
      lines.push([`Turn ${turn.number} (“${turn.instruction}”): A `, BADGE(success(turn, "a")),
        ", B ", BADGE(success(turn, "b")), "."]);
    }
    const count = (side: "a" | "b") => done.filter((t) => success(t, side) === true).length;
    lines.push([`In simulation A succeeded in ${count("a")} of ${done.length} turns, B in ${count("b")}.`]);
  }
  const given = (s: number | null | undefined) => (s === null || s === undefined ? "not given" : `${s}/100`);
  const scored = battle.score_a != null || battle.score_b != null;
  if (scored) lines.push([`Progress scores: A ${given(battle.score_a)}, B ${given(battle.score_b)}.`]);
  if (battle.reason) lines.push([`Reason: “${battle.reason}”`]);
  return lines;
}

export const lineText = (line: Part[]) => line.map((p) => (typeof p === "string" ? p : p.text)).join("");

/** A score field's value: null when left empty, undefined when it is not a whole number 0–100. */
export function parseScore(text: string): number | null | undefined {
  const t = text.trim();
  if (t === "") return null;
  if (!/^\d{1,3}$/.test(t)) return undefined;
  const n = Number(t);
  return n <= 100 ? n : undefined;
}

/** Which vote a key chooses (1–4), or null. */
export function shortcutChoice(key: string): Choice | null {
  return ({ 1: "a", 2: "b", 3: "tie", 4: "both_bad" } as Record<string, Choice>)[key] ?? null;
}

/** True when a key press belongs to a text field (shortcuts then stay out of the way). */
export function isTyping(target: { tagName?: string; type?: string; isContentEditable?: boolean } | null): boolean {
  if (!target?.tagName) return false;
  const tag = target.tagName.toUpperCase();
  if (tag === "TEXTAREA" || tag === "SELECT" || target.isContentEditable) return true;
  if (tag !== "INPUT") return false;
  return !["range", "checkbox", "radio", "button", "submit", "reset"].includes((target.type ?? "text").toLowerCase());
}
