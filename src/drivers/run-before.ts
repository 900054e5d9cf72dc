/**
 * Makes the method `name` of `object` call `hook` first, then itself as before (same arguments,
 * same result). Used to learn that the application is shutting a pool down.
 */
export function runBefore(object: object, name: string, hook: () => void): void {
  const target = object as Record<string, unknown>;
  const original = target[name];
  if (typeof original !== 'function') return;
  target[name] = function (this: unknown, ...args: unknown[]): unknown {
    hook();
    return (original as (...args: unknown[]) => unknown).apply(this, args);
  };
}
