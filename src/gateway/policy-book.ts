import path from 'node:path';
import type { GatewayConfig } from '../config/load.js';
import { loadPolicyFile } from '../policy/load.js';
import type { Policy } from '../policy/types.js';

/**
 * The policy of every (server, grant) pair, loaded once at start. A grant's own policy wins over the
 * server's; a pair with neither has no policy, and `decide()` denies every call for it.
 */
export class PolicyBook {
  private constructor(
    private readonly byServer: Map<string, Policy | undefined>,
    private readonly byServerGrant: Map<string, Policy>,
  ) {}

  /** Loads every policy the config names; throws PolicyError listing every problem of the first bad file. */
  static async load(config: GatewayConfig): Promise<PolicyBook> {
    const base = path.dirname(path.resolve(config.file));
    const cache = new Map<string, Promise<Policy>>();
    const load = (file: string): Promise<Policy> => {
      let policy = cache.get(file);
      if (!policy) {
        policy = loadPolicyFile(file, path.relative(base, file) || file);
        cache.set(file, policy);
      }
      return policy;
    };
    const byServer = new Map<string, Policy | undefined>();
    const byServerGrant = new Map<string, Policy>();
    for (const server of config.servers) {
      byServer.set(server.name, server.policyFile ? await load(server.policyFile) : undefined);
      for (const [grant, file] of server.grantPolicyFiles)
        byServerGrant.set(`${server.name}\u0000${grant}`, await load(file));
    }
    return new PolicyBook(byServer, byServerGrant);
  }

  /** Every distinct policy in force, as `file sha256=<hash>`, for the audit trail. */
  summary(): string[] {
    const all = new Set<Policy>([...this.byServerGrant.values()]);
    for (const policy of this.byServer.values()) if (policy) all.add(policy);
    return [...all].map((p) => `${p.file} sha256=${p.sha256}`).sort();
  }

  resolve(server: string, grant: string): Policy | undefined {
    return this.byServerGrant.get(`${server}\u0000${grant}`) ?? this.byServer.get(server);
  }
}
