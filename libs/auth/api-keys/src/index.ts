export { API_KEY_PREFIX, displayPrefix, generateApiKey, hashApiKey, looksLikeApiKey } from './lib/api-keys';
