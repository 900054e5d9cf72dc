/**
 * Drops every packet of one TCP connection on loopback, both ways, with iptables: the silent
 * partition that a NAT or load balancer dropping an idle flow produces. Only that connection is
 * touched (its two ports are matched), and every rule is removed again by `close()`, or at
 * the latest at process exit.
 */
import { execFileSync } from 'node:child_process';

export interface BlackHole {
  close(): void;
}

const open = new Set<string[][]>();

function iptables(args: readonly string[]): void {
  execFileSync('iptables', ['-w', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
}

function rules(clientPort: number, serverPort: number): string[][] {
  const rule = (from: number, to: number) => [
    'INPUT',
    '-i',
    'lo',
    '-p',
    'tcp',
    '--sport',
    String(from),
    '--dport',
    String(to),
    '-j',
    'DROP',
  ];
  return [rule(clientPort, serverPort), rule(serverPort, clientPort)];
}

function remove(added: string[][]): void {
  for (const rule of added) {
    try {
      iptables(['-D', ...rule]);
    } catch {
      // Already gone.
    }
  }
  open.delete(added);
}

/** Why black holes cannot be made here, or undefined when they can. */
export function blackHoleUnavailable(): string | undefined {
  try {
    iptables(['-L', 'INPUT', '-n']);
    return undefined;
  } catch (err) {
    return `iptables cannot change this kernel's rules (root and the iptables package are needed): ${String(err)}`;
  }
}

/** Black-holes the connection between `clientPort` and `serverPort` on loopback. */
export function blackHole(clientPort: number, serverPort: number): BlackHole {
  const added = rules(clientPort, serverPort);
  open.add(added);
  for (const rule of added) iptables(['-I', ...rule]);
  return { close: () => remove(added) };
}

/** Removes every rule still in place. */
export function closeBlackHoles(): void {
  for (const added of [...open]) remove(added);
}

process.on('exit', closeBlackHoles);

/** The port in a `host:port` client address, as inspectLock reports it. */
export function portOf(address: string | null): number {
  const port = Number(address?.slice(address.lastIndexOf(':') + 1));
  if (!Number.isInteger(port) || port <= 0) throw new Error(`no TCP port in ${address}`);
  return port;
}
