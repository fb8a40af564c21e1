/**
 * The children of a mirror or raidz: the leaves, their config entries (kept
 * in the same order, so config() can be written back), and which of them
 * are stale (attached or replaced and not yet resilvered). Mirrors and raidz
 * differ in how they read and write, not in this bookkeeping.
 */
import { err } from '../../errors.js';
import type { LeafConfig } from './leaf-config.js';
import type { Leaf } from './types.js';

export class ChildSet {
  readonly resilvering = new Set<Leaf>();

  constructor(
    readonly leaves: Leaf[],
    readonly configs: LeafConfig[],
    /** 'mirror 0', 'raidz 1': for error messages. */
    private readonly owner: string,
  ) {
    leaves.forEach((c, i) => {
      if (configs[i]!.resilvering) this.resilvering.add(c);
    });
  }

  private indexOf(leaf: Leaf): number {
    const i = this.leaves.indexOf(leaf);
    if (i < 0) throw err.inval(`${leaf.path} is not a child of ${this.owner}`);
    return i;
  }

  setResilvering(leaf: Leaf, on: boolean): void {
    this.indexOf(leaf);
    if (on) this.resilvering.add(leaf);
    else this.resilvering.delete(leaf);
  }

  /** The config entry a child was opened from (for a replacing/spare child: its original's). */
  configOf(leaf: Leaf): LeafConfig {
    return this.configs[this.indexOf(leaf)]!;
  }

  /** Children marked as being resilvered. */
  stale(): Leaf[] {
    return this.leaves.filter((c) => this.resilvering.has(c));
  }

  /** Put `neu` in the place of child `old`. */
  replace(old: Leaf, neu: Leaf, cfg: LeafConfig, stale: boolean): void {
    const i = this.indexOf(old);
    this.leaves[i] = neu;
    this.configs[i] = cfg;
    this.resilvering.delete(old);
    if (stale) this.resilvering.add(neu);
  }

  /** Add a child: stale until resilvered. */
  add(leaf: Leaf, cfg: LeafConfig): void {
    this.leaves.push(leaf);
    this.configs.push(cfg);
    this.resilvering.add(leaf);
  }

  remove(leaf: Leaf): void {
    const i = this.indexOf(leaf);
    this.leaves.splice(i, 1);
    this.configs.splice(i, 1);
    this.resilvering.delete(leaf);
  }
}
