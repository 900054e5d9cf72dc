/** How many of each key: a key is present while its count is above zero. */
export class Counts<K> {
  readonly #counts = new Map<K, number>();

  has(key: K): boolean {
    return this.#counts.has(key);
  }

  get size(): number {
    return this.#counts.size;
  }

  keys(): IterableIterator<K> {
    return this.#counts.keys();
  }

  add(key: K): void {
    this.#counts.set(key, (this.#counts.get(key) ?? 0) + 1);
  }

  /** Takes one away; a key that is not there stays absent. */
  remove(key: K): void {
    const left = (this.#counts.get(key) ?? 0) - 1;
    if (left > 0) this.#counts.set(key, left);
    else this.#counts.delete(key);
  }
}
