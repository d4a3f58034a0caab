import { connectivitySuite } from "./connectivity.js";

connectivitySuite("hg", "host-gw", 1);
