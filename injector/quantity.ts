// Kubernetes resource quantities ("250m", "1.5", "64Mi", "1e3"), parsed only far
// enough to compare them: annotation overrides must stay within configured bounds.

const SUFFIX: Record<string, number> = {
  '': 1,
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};

// The API server's own grammar: sign, digits with at most one dot, then a binary
// or decimal SI suffix or a decimal exponent.
const QUANTITY = /^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$/;

/** The value of a quantity, or undefined when the string is not one. */
export function parseQuantity(q: string | number): number | undefined {
  if (typeof q === 'number') return Number.isFinite(q) ? q : undefined;
  const m = QUANTITY.exec(q.trim());
  if (!m) return undefined;
  const n = Number(m[1]);
  const s = m[2] ?? '';
  if (s.startsWith('e') || s.startsWith('E')) return n * 10 ** Number(s.slice(1));
  return n * SUFFIX[s];
}
