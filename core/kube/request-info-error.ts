/** A request the API server would refuse before authorizing it, or one the proxy refuses as ambiguous. */
export class RequestInfoError extends Error {
  override name = 'RequestInfoError';
}
