import { subscriptionCovers, type JsonRpcNotification } from '@portcullis/gateway/mcp';

/** MCP's log levels, least severe first (RFC 5424's order). */
const LOG_LEVELS = ['debug', 'info', 'notice', 'warning', 'error', 'critical', 'alert', 'emergency'] as const;
type LogLevel = (typeof LOG_LEVELS)[number];
const rankOf = (level: unknown): number => LOG_LEVELS.indexOf(level as LogLevel);

/**
 * What to do with a request of one owner: send it upstream (perhaps with other params), or answer it here. `then`, on
 * the upstream's success, may name a URI the upstream should now be told to unsubscribe from (a subscribe answered
 * after its owner left or gave up on it, nobody else holding the URI). `failed`: the upstream refused it, or its caller
 * stopped waiting for it (its answer, if one comes, then counts for nothing).
 */
export type SharedStep =
  | {
      readonly forward: Record<string, unknown> | undefined;
      readonly then?: () => string | undefined;
      readonly failed?: () => void;
    }
  | { readonly answer: Record<string, unknown> };

/**
 * The state one upstream session holds for everyone using it, kept apart per owner when a stdio process is shared
 * by several gateway sessions (principals): resource subscriptions and the log level. Without it one session's
 * `resources/unsubscribe` ended another's subscription, every session received the updates of URIs only another
 * subscribed to (perhaps one its policy denies), and one session's `logging/setLevel` changed the others' logs.
 *
 * Subscriptions are counted per URI: the upstream is asked to subscribe by the first owner and to unsubscribe when
 * the last one leaves; updates go to the owners subscribed. The upstream's log level is the most verbose any owner
 * asked for; a log message goes to the owners whose own level lets it through (and to those who never set one).
 */
export class SharedUpstreamState<O> {
  private readonly subscriptions = new Map<string, Set<O>>();
  /**
   * Subscribes sent to the process and not answered yet, per URI. An owner that unsubscribes meanwhile leaves here, and
   * its subscribe's answer counts for nothing; while another owner's is under way, no unsubscribe is sent (the
   * process would end up unsubscribed under a subscriber it answered).
   */
  private readonly pendingSubscribes = new Map<string, Map<object, O>>();
  private readonly levels = new Map<O, LogLevel>();
  private upstreamLevel: LogLevel | undefined;

  /** How `owner`'s request goes on: `undefined` for a method this state has nothing to do with. */
  step(owner: O, method: string, params: Record<string, unknown> | undefined): SharedStep | undefined {
    switch (method) {
      case 'resources/subscribe':
        return this.subscribe(owner, params);
      case 'resources/unsubscribe':
        return this.unsubscribe(owner, params);
      case 'logging/setLevel':
        return this.setLevel(owner, params);
      default:
        return undefined;
    }
  }

  /** The owners a session-level notification is for. */
  recipients(notification: JsonRpcNotification, owners: Iterable<O>): O[] {
    const params = notification.params;
    if (notification.method === 'notifications/resources/updated') {
      const all = [...owners];
      // One session alone on the process: nobody else to keep it from (the upstream decides what it reports).
      if (all.length <= 1) return all;
      const uri = params?.['uri'];
      if (typeof uri !== 'string') return [];
      // The subscribers of the URI, or of a resource it is part of (MCP: an update may name a sub-resource of the
      // one subscribed to, `file:///project/a.ts` for `file:///project`), as the session engine decides it too.
      const subscribed = new Set<O>();
      for (const [parent, subscribers] of this.subscriptions) {
        if (subscriptionCovers(parent, uri)) for (const owner of subscribers) subscribed.add(owner);
      }
      // And of a subscribe not answered yet: a server may report the state as it takes the subscription, before its
      // answer (the session engine takes such an update too). Before, it reached nobody whenever another session
      // shared the process (found by review).
      for (const [parent, pending] of this.pendingSubscribes) {
        if (subscriptionCovers(parent, uri)) for (const owner of pending.values()) subscribed.add(owner);
      }
      return all.filter((owner) => subscribed.has(owner));
    }
    if (notification.method === 'notifications/message') {
      const rank = rankOf(params?.['level']);
      return [...owners].filter((owner) => {
        const own = this.levels.get(owner);
        return own === undefined || rank === -1 || rank >= rankOf(own);
      });
    }
    return [...owners];
  }

  /**
   * `owner` left: what the upstream should now be told (the URIs nobody is subscribed to any more, and the log level
   * if the most verbose one changed).
   */
  leave(owner: O): { readonly unsubscribe: string[]; readonly level: LogLevel | undefined } {
    // Its own subscribes under way count for nothing first: only another owner's keeps the process subscribed. (One the
    // process takes after all has it unsubscribed then: see `subscribe`.)
    for (const uri of [...this.pendingSubscribes.keys()]) this.forgetPending(uri, owner);
    const unsubscribe: string[] = [];
    for (const [uri, owners] of this.subscriptions) {
      if (owners.delete(owner) && owners.size === 0) {
        this.subscriptions.delete(uri);
        if (!this.pendingSubscribes.has(uri)) unsubscribe.push(uri);
      }
    }
    let level: LogLevel | undefined;
    if (this.levels.delete(owner)) {
      const next = this.mostVerbose();
      if (next !== undefined && next !== this.upstreamLevel) level = next;
    }
    return { unsubscribe, level };
  }

  /** Whether some owner is subscribed to a resource: its updates can come at any time, so the process is not idle. */
  get watched(): boolean {
    return this.subscriptions.size > 0 || this.pendingSubscribes.size > 0;
  }

  /** The level the upstream was last set to (undefined: never, since it started). */
  upstreamLevelNow(): LogLevel | undefined {
    return this.upstreamLevel;
  }

  /** The upstream level was set (the request went through). */
  levelSet(level: LogLevel): void {
    this.upstreamLevel = level;
  }

  /**
   * The process ended: the next one holds no subscription or level. The owners' subscriptions and levels are kept, for
   * the next process to be told them again (`replay`) before it serves calls; a session that subscribed keeps hearing
   * of its resources across a crash.
   */
  restarted(): void {
    this.upstreamLevel = undefined;
  }

  /** What a process that has just started must be told: every URI some owner is subscribed to, and the level to log at. */
  replay(): { readonly subscribe: string[]; readonly level: LogLevel | undefined } {
    return { subscribe: [...this.subscriptions.keys()], level: this.mostVerbose() };
  }

  /**
   * The process refused a subscription it was told again (the resource is gone): nobody counts as subscribed to it any
   * more, so the next subscribe goes to the process instead of being answered here.
   */
  refused(uri: string): void {
    this.subscriptions.delete(uri);
  }

  private subscribe(owner: O, params: Record<string, unknown> | undefined): SharedStep {
    const uri = params?.['uri'];
    if (typeof uri !== 'string') return { forward: params };
    const owners = this.subscriptions.get(uri);
    if (owners !== undefined && owners.size > 0) {
      owners.add(owner);
      return { answer: {} };
    }
    // One entry per request (an owner may have two subscribes of one URI under way: one given up, one answered).
    const request = {};
    const pending = this.pendingSubscribes.get(uri) ?? new Map<object, O>();
    pending.set(request, owner);
    this.pendingSubscribes.set(uri, pending);
    /** Whether this subscribe was still awaited (its owner did not unsubscribe or leave meanwhile); it is no longer. */
    const settled = (): boolean => {
      const now = this.pendingSubscribes.get(uri);
      if (now === undefined || !now.delete(request)) return false;
      if (now.size === 0) this.pendingSubscribes.delete(uri);
      return true;
    };
    return {
      forward: params,
      // Taken after its owner left, unsubscribed or gave up on it: the process is unsubscribed again unless someone holds
      // the URI or awaits it. Decided per answer, not once per URI: each subscribe taken late is followed by an
      // unsubscribe sent after it was taken, whatever order a server that handles requests concurrently runs them in.
      then: () => {
        if (!settled()) return this.subscriptions.has(uri) || this.pendingSubscribes.has(uri) ? undefined : uri;
        const now = this.subscriptions.get(uri) ?? new Set<O>();
        now.add(owner);
        this.subscriptions.set(uri, now);
        return undefined;
      },
      failed: () => void settled(),
    };
  }

  private unsubscribe(owner: O, params: Record<string, unknown> | undefined): SharedStep {
    const uri = params?.['uri'];
    if (typeof uri !== 'string') return { forward: params };
    // Its own subscribes still under way: their answers will count for nothing.
    this.forgetPending(uri, owner);
    const owners = this.subscriptions.get(uri);
    if (owners !== undefined) {
      owners.delete(owner);
      if (owners.size > 0) return { answer: {} };
      this.subscriptions.delete(uri);
    }
    // Another owner's subscribe under way: the process stays subscribed for it.
    if (this.pendingSubscribes.has(uri)) return { answer: {} };
    // Nobody else here subscribed (or nobody at all: the upstream answers what it makes of it).
    return { forward: params };
  }

  /** The owner's subscribes of `uri` under way count for nothing when they are answered. */
  private forgetPending(uri: string, owner: O): void {
    const pending = this.pendingSubscribes.get(uri);
    if (pending === undefined) return;
    for (const [request, by] of pending) if (by === owner) pending.delete(request);
    if (pending.size === 0) this.pendingSubscribes.delete(uri);
  }

  private setLevel(owner: O, params: Record<string, unknown> | undefined): SharedStep {
    const level = params?.['level'];
    if (rankOf(level) === -1) return { forward: params }; // the upstream answers what is wrong with it
    this.levels.set(owner, level as LogLevel);
    const upstream = this.mostVerbose() as LogLevel;
    if (upstream === this.upstreamLevel) return { answer: {} };
    return {
      forward: { ...params, level: upstream },
      then: () => {
        this.levelSet(upstream);
        return undefined;
      },
    };
  }

  private mostVerbose(): LogLevel | undefined {
    let best: LogLevel | undefined;
    for (const level of this.levels.values()) if (best === undefined || rankOf(level) < rankOf(best)) best = level;
    return best;
  }
}
