import { connectivitySuite } from "./connectivity.js";

connectivitySuite("vx", "vxlan", 1);
