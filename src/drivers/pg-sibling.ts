import type { PgClientLike } from './pg-types.js';
import type { SiblingSession } from './types.js';

/** A short-lived client with `client`'s connection parameters, of `client`'s own class. */
export async function openPgSibling(client: PgClientLike): Promise<SiblingSession> {
  const Client = client.constructor as new (config: object) => PgClientLike;
  const sibling = new Client({ ...client.connectionParameters });
  sibling.on('error', () => undefined);
  const close = async () => void (await sibling.end().catch(() => undefined));
  try {
    await sibling.connect();
  } catch (err) {
    await close();
    throw err;
  }
  return {
    query: async (sql, params) => {
      const result = await sibling.query(sql, params ? [...params] : undefined);
      return (Array.isArray(result) ? result : [result]).map((each) => each.rows);
    },
    close,
  };
}
