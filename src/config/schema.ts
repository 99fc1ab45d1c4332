import { z } from 'zod';

/** Server names become tool prefixes (`<server>__<tool>`), so they may not contain `__`. */
const serverName = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/, 'a name of letters, digits, "_" and "-" (at most 63 characters)')
  .refine(
    (name) => !name.includes('__'),
    'a name without "__" (it separates server and tool in aggregated names)',
  );

const common = {
  /** Policy document for every grant on this server, unless `grant_policies` names one for the grant. */
  policy: z.string().min(1).optional(),
  grant_policies: z.record(z.string().min(1), z.string().min(1)).optional(),
  /** Longest an upstream request may run before the call fails with a timeout. */
  timeout_ms: z.number().int().positive().max(86_400_000).default(300_000),
  description: z.string().optional(),
};

const stdioServer = z
  .object({
    command: z.string().min(1),
    args: z.array(z.string()).default([]),
    env: z.record(z.string(), z.string()).default({}),
    /** Relative to the config file's folder; defaults to that folder. */
    cwd: z.string().optional(),
    ...common,
  })
  .strict();

const remoteServer = z
  .object({
    url: z.url({ protocol: /^https?$/ }),
    headers: z.record(z.string(), z.string()).default({}),
    /** `auto` tries Streamable HTTP and falls back to SSE. */
    transport: z.enum(['auto', 'streamable-http', 'sse']).default('auto'),
    ...common,
  })
  .strict();

const grant = z
  .object({
    id: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$/, 'an id of letters, digits, "_", ".", "@" and "-"'),
    owner: z.string().min(1),
    /** Hex SHA-256 of the bearer token (`printf %s "$TOKEN" | sha256sum`). */
    token_sha256: z
      .string()
      .regex(/^[0-9a-f]{64}$/i, '64 hex characters (the SHA-256 of the token)')
      .optional(),
    /** Name of an environment variable that holds the token. */
    token_env: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name')
      .optional(),
  })
  .strict()
  .refine((g) => (g.token_sha256 === undefined) !== (g.token_env === undefined), {
    message: 'exactly one of token_sha256 or token_env',
  });

/**
 * One person and every identifier they are known by: Slack user ids, Slack handles, emails, and the names they
 * use with the approvals API/CLI. Votes and grant owners written in any of these forms are this person.
 */
const person = z
  .object({
    id: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,63}$/, 'an id of letters, digits, "_", ".", "@", "+" and "-"'),
    identifiers: z.array(z.string().trim().min(1).max(254)).min(1),
  })
  .strict();

/** An identifier listed for two people would make a vote count for whichever is found first: refused. */
const people = z.array(person).superRefine((entries, ctx) => {
  // A person's id is one of their identifiers too (an owner or reviewer may be written as it).
  const owners = new Map<string, string>();
  entries.forEach((entry, index) => {
    const folded = entry.id.toLowerCase();
    const other = owners.get(folded);
    if (other !== undefined)
      ctx.addIssue({ code: 'custom', path: [index, 'id'], message: `person id "${entry.id}" is used twice` });
    else owners.set(folded, entry.id);
  });
  entries.forEach((entry, index) => {
    entry.identifiers.forEach((identifier, at) => {
      // Case-insensitively: "Alice" and "alice" for two people is a mistake even where case matters.
      const folded = identifier.toLowerCase();
      const other = owners.get(folded);
      if (other !== undefined && other !== entry.id)
        ctx.addIssue({
          code: 'custom',
          path: [index, 'identifiers', at],
          message: `identifier "${identifier}" is listed for both "${other}" and "${entry.id}"`,
        });
      else owners.set(folded, entry.id);
    });
  });
});

export const configSchema = z
  .object({
    $schema: z.string().optional(),
    listen: z
      .object({
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(8080),
      })
      .strict()
      .default({ host: '127.0.0.1', port: 8080 }),
    redis: z
      .object({
        /** Overridden by REDIS_URL. With neither, `serve` starts a private redis-server. */
        url: z
          .string()
          .regex(/^rediss?:\/\//, 'a redis:// or rediss:// URL')
          .optional(),
        /** Prefix of every key the gateway writes, so several deployments can share a Redis. */
        prefix: z.string().min(1).max(64).default('cs:'),
      })
      .strict()
      .default({ prefix: 'cs:' }),
    servers: z
      .record(serverName, z.union([stdioServer, remoteServer]))
      .refine((servers) => Object.keys(servers).length > 0, 'at least one upstream server'),
    grants: z.array(grant).default([]),
    audit: z
      .object({
        /** Store the call arguments in the trail. Off by default: only their hash and shape are kept. */
        keep_arguments: z.boolean().default(false),
        /** Also append every event to this JSON Lines file (relative to the config file). */
        jsonl: z.string().min(1).optional(),
      })
      .strict()
      .default({ keep_arguments: false }),
    http: z
      .object({
        max_body_bytes: z
          .number()
          .int()
          .positive()
          .max(64 * 1024 * 1024)
          .default(1024 * 1024),
        /** Host header values accepted besides the loopback names and the listen address. */
        allowed_hosts: z.array(z.string().min(1)).default([]),
        /** Origin header values accepted (browsers send one); loopback origins are always accepted. */
        allowed_origins: z.array(z.string().min(1)).default([]),
        session_idle_timeout_ms: z
          .number()
          .int()
          .positive()
          .default(30 * 60_000),
        /** Addresses of reverse proxies whose X-Forwarded-For is believed (to find the client's address). */
        trusted_proxies: z.array(z.string().min(1)).default([]),
        /**
         * Wrong bearer tokens allowed per window: `max` from one client address and with one token, `global_max`
         * from everyone. Past a limit, wrong tokens get 429 until the window ends; valid tokens are always served.
         */
        auth_failures: z
          .object({
            max: z.number().int().positive().default(20),
            window_seconds: z.number().int().positive().default(60),
            global_max: z.number().int().positive().default(1000),
          })
          .strict()
          .default({ max: 20, window_seconds: 60, global_max: 1000 }),
      })
      .strict()
      .default({
        max_body_bytes: 1024 * 1024,
        allowed_hosts: [],
        allowed_origins: [],
        session_idle_timeout_ms: 30 * 60_000,
        trusted_proxies: [],
        auth_failures: { max: 20, window_seconds: 60, global_max: 1000 },
      }),
    approvals: z
      .object({
        /** Progress notifications to a client holding for a decision (when it sent a progress token). */
        progress_interval_ms: z.number().int().min(100).default(15_000),
        /** How often a waiting process re-reads its parked calls (pub/sub is the fast path). */
        poll_ms: z.number().int().min(50).default(5_000),
        /**
         * A process that runs an approved call refreshes a liveness key this often times three; when the key
         * lapses (the process died), another process marks the call interrupted instead of running it again.
         */
        liveness_ms: z.number().int().min(1_000).max(300_000).default(15_000),
        /** MCP tasks: the ttl given when the client asks for none, the longest granted, the poll interval suggested. */
        task_ttl_ms: z.number().int().min(60_000).max(86_400_000).default(3_600_000),
        task_max_ttl_ms: z.number().int().min(60_000).max(86_400_000).default(86_400_000),
        task_poll_interval_ms: z.number().int().min(100).max(60_000).default(2_000),
        /**
         * After an approved call's result is handed to one request, identical calls are told it was already
         * delivered for this long (instead of a person being asked again at once); 0 turns it off.
         */
        used_answer_ms: z.number().int().min(0).max(3_600_000).default(30_000),
      })
      .strict()
      .default({
        progress_interval_ms: 15_000,
        poll_ms: 5_000,
        liveness_ms: 15_000,
        task_ttl_ms: 3_600_000,
        task_max_ttl_ms: 86_400_000,
        task_poll_interval_ms: 2_000,
        used_answer_ms: 30_000,
      }),
    /** Largest tool-call `arguments` object, as JSON bytes. */
    max_argument_bytes: z
      .number()
      .int()
      .positive()
      .default(256 * 1024),
    /** How long SIGTERM waits for calls in flight before closing. */
    shutdown_grace_ms: z.number().int().min(0).default(10_000),
    /** Who is who among reviewers and grant owners (optional): see `person`. */
    people: people.default([]),
    /** Where the private Redis keeps its files; relative to the working directory. */
    data_dir: z.string().min(1).default('.countersign'),
  })
  .strict();

export type RawConfig = z.infer<typeof configSchema>;
export type StdioServerConfig = z.infer<typeof stdioServer>;
export type RemoteServerConfig = z.infer<typeof remoteServer>;
export type ServerConfig = StdioServerConfig | RemoteServerConfig;
export type GrantConfig = z.infer<typeof grant>;
export type PersonConfig = z.infer<typeof person>;

export function isStdioServer(server: ServerConfig): server is StdioServerConfig {
  return 'command' in server;
}
