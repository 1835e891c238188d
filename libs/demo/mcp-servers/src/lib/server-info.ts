/** Version the demo servers report in `serverInfo`. */
export const DEMO_SERVERS_VERSION = '0.1.0';
