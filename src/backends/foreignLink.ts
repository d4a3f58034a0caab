/**
 * A device name of ours held by an interface of another kind (the operator's, or another
 * tool's leftover) is never taken over or deleted: the agent stops and says what to do.
 */
import type { LinkInfo } from "../dataplane/netlink.js";

export function refuseForeignLink(link: LinkInfo | undefined, name: string, isOurKind: (l: LinkInfo) => boolean, kindName: string): void {
  if (link && !isOurKind(link)) throw new Error(`interface ${name} exists but is a ${link.kind ?? "plain"} device, not ${kindName}; remove it`);
}
