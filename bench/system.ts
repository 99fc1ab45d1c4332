import os from 'node:os';

export interface MachineInfo {
  node: string;
  platform: string;
  cpuModel: string;
  cores: number;
  /** 1-minute load average when the run started: other work on the machine skews both sides. */
  loadAverageAtStart: number;
}

export function machineInfo(): MachineInfo {
  const cpus = os.cpus();
  return {
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cores: typeof os.availableParallelism === 'function' ? os.availableParallelism() : cpus.length,
    loadAverageAtStart: os.loadavg()[0] ?? 0,
  };
}

/** A positive number from the environment, or `fallback` when it is unset or not a positive number. */
export function envNumber(name: string, fallback: number): number {
  const value = Number(process.env[name]);
  return Number.isFinite(value) && value > 0 ? value : fallback;
}

/**
 * BENCH_GATEWAY_NODE_FLAGS: Node/V8 flags for the `countersign serve` processes the bench starts (e.g.
 * `--optimize-for-size`, which NODE_OPTIONS does not take); none by default.
 */
export function gatewayNodeFlags(): string[] {
  return (process.env.BENCH_GATEWAY_NODE_FLAGS ?? '').split(/\s+/).filter(Boolean);
}
