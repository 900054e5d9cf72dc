/**
 * Wraps `make` so that it runs once per connection object and hands out the same result for it
 * afterwards; nothing keeps a connection alive for it.
 */
export function perConnection<Connection extends object, Value>(
  make: (connection: Connection) => Value,
): (connection: Connection) => Value {
  const made = new WeakMap<Connection, Value>();
  return (connection) => {
    let value = made.get(connection);
    if (value === undefined) {
      value = make(connection);
      made.set(connection, value);
    }
    return value;
  };
}
