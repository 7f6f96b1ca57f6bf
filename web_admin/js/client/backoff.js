// Exponential backoff with "equal jitter": half of each wait is fixed, half random, so that many
// consoles dropped by one server restart do not all come back in the same millisecond.

/**
 * The wait before attempt `attempt` (0 = the first retry): base, 2·base, 4·base … capped at `max`,
 * each drawn from [ceiling/2, ceiling].
 */
export function backoffDelay(attempt, { base = 500, max = 15_000, random = Math.random } = {}) {
  const ceiling = Math.min(max, base * 2 ** Math.max(0, attempt));
  return Math.round(ceiling / 2 + random() * ceiling / 2);
}
