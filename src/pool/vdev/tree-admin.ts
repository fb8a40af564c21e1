/**
 * Device management on an open VdevTree: attach, detach, replace, hot
 * spares, offline/online/clear, and the end of a resilver — the tree-shape
 * half of `zpool attach|detach|replace|offline|online|clear`. The pool engine
 * does the other half: writes labels on new devices, runs the resilver
 * (reading every block born after the device's last good txg with
 * mode 'resilver'), then calls resilverDone() and persists config().
 *
 * Rules (ZFS's):
 *  - attach: a single device becomes a mirror, a mirror gets wider; raidz
 *    cannot be widened. The new device is stale until resilvered.
 *  - replace/spare: the old device stays readable beside the new one (a
 *    `replacing`/`spare` vdev), so redundancy is not lost during resilver.
 *  - detach/offline never remove the last valid copy ("no valid replicas").
 *  - New devices must be at least as large as the space they must hold.
 */
import { err } from '../../errors.js';
import { leafDataBytes } from './child-io.js';
import { leafUsable } from './leaf-base.js';
import type { LeafConfig } from './leaf-config.js';
import { newGuid } from './layout.js';
import { MirrorVdev } from './mirror.js';
import { RaidzVdev } from './raidz.js';
import { childStale, ReplacingLeaf } from './replacing.js';
import { SingleVdev } from './single.js';
import type { VdevTree } from './tree.js';
import type { Leaf, TopVdev } from './types.js';

/** Where a real device sits: its top-level, the direct child of the top-level holding it, and the replacing/spare vdev if any. */
export interface Place {
  top: TopVdev;
  child: Leaf;
  composite?: ReplacingLeaf;
}

function childrenOf(top: TopVdev): Leaf[] {
  if (top instanceof SingleVdev) return [top.leaf];
  if (top instanceof MirrorVdev || top instanceof RaidzVdev) return top.children;
  throw err.notsup(`top-level ${top.id}: unknown vdev kind`);
}

export function locate(tree: VdevTree, leaf: Leaf): Place {
  for (const top of tree.tops) {
    for (const child of childrenOf(top)) {
      if (child === leaf) return { top, child };
      if (child instanceof ReplacingLeaf && child.members.includes(leaf)) return { top, child, composite: child };
    }
  }
  throw err.noent(`${leaf.path} is not in the pool`);
}

function baseConfig(top: TopVdev, child: Leaf): LeafConfig {
  if (top instanceof SingleVdev) return top.leafConfig();
  return (top as MirrorVdev | RaidzVdev).childConfigOf(child);
}

/** Put `neu` where `old` is among the top-level's direct children. */
function swapChild(top: TopVdev, old: Leaf, neu: Leaf, cfg: LeafConfig, stale: boolean): void {
  if (top instanceof SingleVdev) {
    if (stale) throw err.inval(`top-level ${top.id}: a lone device cannot be stale`);
    top.replaceLeaf(neu, cfg);
  } else (top as MirrorVdev | RaidzVdev).replaceChild(old, neu, cfg, stale);
}

/** Bytes a device in this top-level must offer in its data area. */
function needBytes(top: TopVdev): number {
  return top instanceof RaidzVdev ? top.childBytes : top.capacity;
}

function checkSize(top: TopVdev, neu: Leaf): void {
  if (!leafUsable(neu.state)) throw err.nxio(`${neu.path} is ${neu.state}`);
  if (leafDataBytes(neu.size) < needBytes(top)) throw err.inval(`device '${neu.path}' is too small for top-level ${top.id}`);
}

function inTree(tree: VdevTree, leaf: Leaf): boolean {
  return tree.leaves().includes(leaf);
}

/** `attach EXISTING NEW`: mirror `neu` onto `existing`. Returns the (possibly new) top-level. */
export function attach(tree: VdevTree, existing: Leaf, neu: Leaf, cfg: LeafConfig): TopVdev {
  if (inTree(tree, neu)) throw err.busy(`${neu.path} is already part of the pool`);
  const { top, child, composite } = locate(tree, existing);
  if (composite) throw err.notsup(`${existing.path} is being replaced; wait for the resilver or detach first`);
  checkSize(top, neu);
  if (top instanceof RaidzVdev) throw err.notsup('cannot attach to a raidz device: raidz expansion is not supported');
  tree.watch(neu);
  if (top instanceof MirrorVdev) {
    top.addChild(neu, cfg);
    return top;
  }
  const single = top as SingleVdev;
  const mirror = new MirrorVdev([child, neu], {
    id: single.id,
    guid: newGuid(),
    asize: single.capacity,
    childConfigs: [{ ...stripTop(single.leafConfig()) }, cfg],
    log: tree.isLog(single),
    events: tree.options.events,
    readOnly: tree.options.readOnly,
  });
  mirror.setResilvering(neu, true);
  tree.tops[tree.tops.indexOf(single)] = mirror;
  return mirror;
}

function stripTop(c: LeafConfig): LeafConfig {
  const { id: _i, asize: _a, log: _l, ...rest } = c;
  return rest;
}

/** `detach DEV`: remove a mirror member, or one side of a replacing/spare vdev. */
export async function detach(tree: VdevTree, leaf: Leaf): Promise<void> {
  const { top, child, composite } = locate(tree, leaf);
  if (composite) {
    const rest = composite.members.filter((m) => m !== leaf);
    const readable = rest.filter((m) => leafUsable(m.state) && !composite.stale.has(m));
    if (composite.source() === leaf && readable.length === 0 && !redundantWithout(top, composite)) {
      throw err.busy(`cannot detach ${leaf.path}: no valid replicas (the resilver has not finished)`);
    }
    if (rest.length === 1 && top instanceof SingleVdev && composite.stale.has(rest[0]!)) {
      throw err.busy(`cannot detach ${leaf.path}: no valid replicas (the resilver has not finished)`);
    }
    const idx = composite.members.indexOf(leaf);
    composite.members.splice(idx, 1);
    composite.memberConfigs.splice(idx, 1);
    composite.stale.delete(leaf);
    if (composite.members.length === 1) {
      const last = composite.members[0]!;
      swapChild(top, composite, last, composite.memberConfigs[0]!, composite.stale.has(last));
    }
    if (!tree.spares.includes(leaf)) await leaf.close();
    return;
  }
  if (!(top instanceof MirrorVdev)) throw err.notsup(`cannot detach ${leaf.path}: only mirror members and replacing or spare devices can be detached`);
  const others = top.children.filter((c) => c !== child);
  if (!others.some((c) => leafUsable(c.state) && !childStale(c, new Set(top.resilveringChildren())))) {
    throw err.busy(`cannot detach ${leaf.path}: no valid replicas`);
  }
  top.removeChild(child);
  if (top.children.length === 1) {
    // A one-way mirror is a plain device again.
    const last = top.children[0]!;
    const single = new SingleVdev(last, {
      id: top.id,
      config: { ...top.childConfigOf(last), id: top.id, asize: top.capacity, ...(tree.isLog(top) ? { log: true } : {}) },
      events: tree.options.events,
      readOnly: tree.options.readOnly,
    });
    tree.tops[tree.tops.indexOf(top)] = single;
  }
  await leaf.close();
}

/** Would the top-level still serve every block if this child were missing? */
function redundantWithout(top: TopVdev, child: Leaf): boolean {
  if (top instanceof SingleVdev) return false;
  const kids = childrenOf(top).filter((c) => c !== child);
  const res = new Set(top instanceof MirrorVdev || top instanceof RaidzVdev ? top.resilveringChildren() : []);
  const missing = kids.filter((c) => !leafUsable(c.state) || childStale(c, res)).length + 1;
  return top instanceof RaidzVdev ? missing <= top.nparity : missing < childrenOf(top).length;
}

/**
 * `replace OLD NEW` (or a hot spare taking over, kind 'spare'): `old` and
 * `neu` become a replacing/spare vdev; `neu` is stale until resilverDone().
 */
export function replace(tree: VdevTree, old: Leaf, neu: Leaf, cfg: LeafConfig, kind: 'replacing' | 'spare' = 'replacing'): ReplacingLeaf {
  if (inTree(tree, neu) && !(kind === 'spare' && tree.spares.includes(neu) && !spareInUse(tree, neu))) {
    throw err.busy(`${neu.path} is already part of the pool`);
  }
  const { top, child, composite } = locate(tree, old);
  checkSize(top, neu);
  tree.watch(neu);
  if (composite) {
    // Replacing a device a spare stands in for: the new device joins the
    // spare vdev, which becomes a replacing vdev; at the end the original
    // and the spare both leave (the spare returns to the available list).
    if (composite.kind !== 'spare' || composite.members[0] !== old || kind !== 'replacing') {
      throw err.busy(`${old.path} is already being replaced`);
    }
    composite.members.push(neu);
    composite.memberConfigs.push(cfg);
    composite.stale.add(neu);
    composite.kind = 'replacing';
    return composite;
  }
  const r = new ReplacingLeaf(kind, newGuid(), [child, neu], [baseConfig(top, child), cfg], [neu]);
  swapChild(top, child, r, baseConfig(top, child), false);
  return r;
}

export function spareInUse(tree: VdevTree, spare: Leaf): boolean {
  return tree.tops.some((t) => childrenOf(t).some((c) => c instanceof ReplacingLeaf && c.members.includes(spare)));
}

/** Spares not standing in for any device, usable. */
export function availableSpares(tree: VdevTree): Leaf[] {
  return tree.spares.filter((s) => leafUsable(s.state) && !spareInUse(tree, s));
}

/** A hot spare takes over `failed` (the engine calls this when a device faults). Undefined when no spare fits. */
export function activateSpare(tree: VdevTree, failed: Leaf): ReplacingLeaf | undefined {
  const { top, composite } = locate(tree, failed);
  if (composite) return undefined;
  for (const s of availableSpares(tree)) {
    if (leafDataBytes(s.size) < needBytes(top)) continue;
    return replace(tree, failed, s, tree.auxConfigOf(s)!, 'spare');
  }
  return undefined;
}

/** Is anything waiting for a resilver? */
export function needsResilver(tree: VdevTree): boolean {
  return tree.tops.some(
    (t) =>
      ((t instanceof MirrorVdev || t instanceof RaidzVdev) && t.resilveringChildren().length > 0) ||
      childrenOf(t).some((c) => c instanceof ReplacingLeaf && c.stale.size > 0),
  );
}

/**
 * The resilver finished: stale devices are current. Replacing vdevs collapse
 * to their new device (the old one is closed; a spare among them returns to
 * the available list); spare vdevs stay until detached.
 */
export async function resilverDone(tree: VdevTree): Promise<void> {
  for (const top of [...tree.tops]) {
    if (top instanceof MirrorVdev || top instanceof RaidzVdev) for (const c of top.resilveringChildren()) top.setResilvering(c, false);
    for (const c of [...childrenOf(top)]) {
      if (!(c instanceof ReplacingLeaf)) continue;
      c.stale.clear();
      if (c.kind !== 'replacing') continue;
      const last = c.members[c.members.length - 1]!;
      swapChild(top, c, last, c.memberConfigs[c.members.length - 1]!, false);
      for (const m of c.members.slice(0, -1)) if (!tree.spares.includes(m)) await m.close();
    }
  }
}

/** `offline [-t] DEV`: refuses when it would leave a top-level without a valid copy. */
export function offline(tree: VdevTree, leaf: Leaf, temporary = false): void {
  const { top, child, composite } = locate(tree, leaf);
  const ok = composite ? composite.members.some((m) => m !== leaf && leafUsable(m.state) && !composite.stale.has(m)) || redundantWithout(top, child) : redundantWithout(top, child);
  if (!ok && leafUsable(leaf.state)) throw err.busy(`cannot offline ${leaf.path}: no valid replicas`);
  leaf.state = 'OFFLINE';
  if (temporary) tree.temporarilyOffline.add(leaf);
  else tree.temporarilyOffline.delete(leaf);
}

/** `online DEV`: reopen it. It missed writes while away: the engine resilvers it (mark it with setResilvering or resilver by birth txg). */
export async function online(tree: VdevTree, leaf: Leaf): Promise<void> {
  locate(tree, leaf);
  tree.temporarilyOffline.delete(leaf);
  leaf.state = 'ONLINE';
  if (leaf.reopen) await leaf.reopen();
}

/** `clear [DEV]`: reset error counters and give faulted/removed devices another chance. */
export async function clear(tree: VdevTree, leaf?: Leaf): Promise<void> {
  const targets = leaf ? [leaf] : [...tree.leaves(), ...tree.spares, ...tree.l2cache];
  for (const l of targets) {
    l.errors.read = 0;
    l.errors.write = 0;
    l.errors.cksum = 0;
    if ((l.state === 'FAULTED' || l.state === 'REMOVED' || l.state === 'UNAVAIL' || l.state === 'DEGRADED') && l.reopen) await l.reopen();
  }
}
