/** One place for the version string; the bundler inlines it. */
export const VERSION = "0.1.0";
