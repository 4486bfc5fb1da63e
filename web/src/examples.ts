/** Example instructions for every cube colour, from the scene's own examples. */

export const COLOURS = ["red", "green", "blue"] as const;
const WORD = new RegExp(`\\b(${COLOURS.join("|")})\\b`, "g");

/**
 * Each example once per colour: its first colour becomes each of red, green and blue in turn,
 * any second colour the next one round (never the same cube twice). Order: by template, then
 * colour; duplicates dropped.
 */
export function colourVariants(examples: readonly string[]): string[] {
  const out: string[] = [];
  for (const example of examples) {
    const found = [...example.matchAll(WORD)].map((m) => m[1]);
    if (found.length === 0) {
      out.push(example);
      continue;
    }
    COLOURS.forEach((_, k) => {
      let n = 0;
      out.push(example.replace(WORD, () => COLOURS[(k + n++) % COLOURS.length]));
    });
  }
  return [...new Set(out)];
}
