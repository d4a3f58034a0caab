import { e2eSuite } from "./connectivity.js";

e2eSuite("ev", "vxlan", 1);
