import { connectivitySuite } from "./connectivity.js";

// Two L2 segments joined by a router: DirectRouting must route same-segment peers
// directly and tunnel to the others.
connectivitySuite("dr", "vxlan-direct", 2);
