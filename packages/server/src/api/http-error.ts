/**
 * An answer of the HTTP layer's own (routing, methods, bodies, authentication, forwarding,
 * the admin endpoints' parameters): it names its status and code itself. Errors from the
 * domain go through errors.ts instead. http.ts answers both.
 */
export class HttpError extends Error {
  override readonly name = "HttpError";
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}
