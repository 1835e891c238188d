import { Catch, type ArgumentsHost, type ExceptionFilter } from '@nestjs/common';
import type { Logger } from '@portcullis/shared/util-logger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { sendProblem } from './problem-details';

/** Global Nest filter: every error leaves the control plane as RFC 9457 problem+json with a trace id. */
@Catch()
export class ProblemDetailsFilter implements ExceptionFilter {
  constructor(private readonly logger: Logger) {}

  catch(exception: unknown, host: ArgumentsHost): void {
    const http = host.switchToHttp();
    sendProblem(http.getRequest<FastifyRequest>(), http.getResponse<FastifyReply>(), exception, this.logger);
  }
}
