// Test card numbers: the Luhn check digit for a body, so tests and benchmarks can make
// valid PANs of any brand and length without a list of real-looking numbers.

/** `body` followed by the digit that makes the whole number pass the Luhn check. */
export function luhnComplete(body: string): string {
  let sum = 0;
  for (let i = 0; i < body.length; i++) {
    let d = body.charCodeAt(body.length - 1 - i) - 48;
    if (i % 2 === 0) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
  }
  return body + String((10 - (sum % 10)) % 10);
}
