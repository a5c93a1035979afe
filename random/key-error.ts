/** A key coordinate that no generator accepts (names it and the rule it breaks). */
export class RngKeyError extends Error {
  override name = 'RngKeyError';
  constructor(
    readonly field: string,
    readonly value: unknown,
    readonly rule: string,
  ) {
    super(`rng key ${field} = ${String(value)}: ${rule}`);
  }
}
