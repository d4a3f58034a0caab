/** Rejects when `p` has not settled within `ms` (a late failure of `p` is swallowed). */
export async function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  p.catch(() => undefined); // a late failure after the timeout must not go unhandled
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms}ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
