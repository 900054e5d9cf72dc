/**
 * Calls `ping` every `every` milliseconds; a ping that fails, or is still unanswered `every`
 * ms after it was sent, calls `onDead` (so a silent partition is noticed within about two
 * periods). Returns the function that stops it. The timer does not keep the process alive.
 */
export function startKeepalive(
  ping: () => Promise<void>,
  every: number,
  onDead: (cause: unknown) => void,
): () => void {
  let sentAt: number | undefined;
  const timer = setInterval(() => {
    if (sentAt !== undefined) {
      if (performance.now() - sentAt >= every) {
        onDead(new Error(`The connection did not answer a keepalive check within ${every} ms.`));
      }
      return;
    }
    sentAt = performance.now();
    ping().then(
      () => (sentAt = undefined),
      (err: unknown) => onDead(err),
    );
  }, every);
  timer.unref();
  return () => clearInterval(timer);
}
