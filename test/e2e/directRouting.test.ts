import { e2eSuite } from "./connectivity.js";

// node-1 and node-3 share segment 1, node-2 (and a later node-4) sit on segment 2 behind a
// router: DirectRouting routes same-segment peers directly and tunnels to the others.
e2eSuite("ed", "vxlan-direct", 2);
