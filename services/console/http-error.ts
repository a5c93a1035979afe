// The one error type API handlers throw on purpose; the server turns it into `{error, message, field?}`.

export class HttpError extends Error {
  override name = 'HttpError';
  constructor(
    readonly status: 400 | 401 | 403 | 404 | 409 | 429 | 500 | 502 | 503 | 504,
    /** Machine-readable, lowercase (`invalid_argument`, `unauthorized`, `not_found`, …). */
    readonly code: string,
    message: string,
    /** The offending request field, when one is to blame. */
    readonly field?: string,
  ) {
    super(message);
  }
}
