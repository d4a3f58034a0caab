import { e2eSuite } from "./connectivity.js";

e2eSuite("eh", "host-gw", 1);
