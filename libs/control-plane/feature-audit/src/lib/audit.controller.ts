import { applyDecorators, Body, Controller, Get, Param, Post, Query, Res, StreamableFile } from '@nestjs/common';
import { ApiQuery } from '@nestjs/swagger';
import {
  auditAnchorResponse,
  auditAnchorsQuery,
  auditEventResponse,
  auditEventsExportQuery,
  auditEventsQuery,
  auditExportResponse,
  auditVerifyQuery,
  auditVerifyResponse,
  createAuditExportRequest,
  pageQuery,
  type AuditAnchorsQuery,
  type AuditEventFilters,
  type AuditVerifyQuery,
  type AuditEventsQuery,
  type PageQuery,
  type ParsedCreateAuditExportRequest,
} from '@portcullis/contracts/api';
import { Allow, CurrentTenant, type TenantScope } from '@portcullis/control-plane/auth';
import { ApiRoute, IdParamPipe, ZodPipe } from '@portcullis/control-plane/http';
import type { FastifyReply } from 'fastify';
import { AuditService, type FileDownload } from './audit.service';

const TAG = 'audit';

/** The filter parameters in OpenAPI (the zod schema in libs/contracts/api is what validates them). */
const FILTER_DOCS: readonly [string, string][] = [
  ['from', 'occurred at or after (ISO 8601 with zone)'],
  ['to', 'occurred before (ISO 8601 with zone)'],
  ['actorUserId', 'user id'],
  ['agentClientId', 'agent client id'],
  ['upstreamId', 'upstream id'],
  ['tool', 'exposed tool name'],
  ['method', 'MCP method or control-plane action'],
  ['decision', 'allow | deny | require_approval'],
  ['outcome', 'ok | error | denied | timeout | pending_approval ...'],
];
const AuditFilterQuery = () =>
  applyDecorators(...FILTER_DOCS.map(([name, description]) => ApiQuery({ name, required: false, type: String, description })));

function sendFile(reply: FastifyReply, file: FileDownload): StreamableFile {
  reply.header('repr-digest', `sha-256=:${Buffer.from(file.sha256, 'hex').toString('base64')}:`);
  reply.header('x-audit-row-count', String(file.rowCount));
  reply.header('cache-control', 'no-store');
  return new StreamableFile(file.stream, {
    type: file.contentType,
    disposition: `attachment; filename="${file.fileName}"`,
    length: file.length,
  });
}

@Controller('api/v1/tenants/:tenantId/audit')
export class AuditController {
  constructor(private readonly audit: AuditService) {}

  @Get('events')
  @Allow('tenant:audit:read')
  @ApiRoute({
    tag: TAG,
    summary:
      'Audit events, newest first: time range (from inclusive, to exclusive) and equality filters, cursor pages; or, with afterSeq, the events after that seq in chain order (follow the trail without gaps: continue with the last seq)',
    response: auditEventResponse,
    paged: true,
  })
  @AuditFilterQuery()
  @ApiQuery({ name: 'afterSeq', required: false, type: String, description: 'events after this chain sequence number, oldest first (not with cursor)' })
  events(@CurrentTenant() tenant: TenantScope, @Query(new ZodPipe(auditEventsQuery)) query: AuditEventsQuery) {
    return this.audit.events(tenant, query);
  }

  @Get('events.csv')
  @Allow('tenant:audit:export')
  @ApiRoute({ tag: TAG, summary: 'Small synchronous CSV export in chain order (spreadsheet-safe; bounded row count)' })
  @AuditFilterQuery()
  async eventsCsv(
    @CurrentTenant() tenant: TenantScope,
    @Query(new ZodPipe(auditEventsExportQuery)) filters: AuditEventFilters,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<StreamableFile> {
    return sendFile(reply, await this.audit.exportNow(tenant, 'csv', filters));
  }

  @Get('events.jsonl')
  @Allow('tenant:audit:export')
  @ApiRoute({ tag: TAG, summary: 'Small synchronous JSON Lines export in chain order (bounded row count)' })
  @AuditFilterQuery()
  async eventsJsonl(
    @CurrentTenant() tenant: TenantScope,
    @Query(new ZodPipe(auditEventsExportQuery)) filters: AuditEventFilters,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<StreamableFile> {
    return sendFile(reply, await this.audit.exportNow(tenant, 'jsonl', filters));
  }

  @Get('verify')
  @Allow('tenant:audit:read')
  @ApiRoute({
    tag: TAG,
    summary: "Verify the tenant's hash chain: ok, or the first broken link (bounded per request; continue with afterSeq)",
    response: auditVerifyResponse,
  })
  verify(@CurrentTenant() tenant: TenantScope, @Query(new ZodPipe(auditVerifyQuery)) query: AuditVerifyQuery) {
    return this.audit.verify(tenant, query);
  }

  @Get('anchors')
  @Allow('tenant:audit:read')
  @ApiRoute({
    tag: TAG,
    summary:
      "The tenant's signed chain heads in seq order, to keep outside the database and check with the audit worker's public key (continue with afterSeq=nextCursor)",
    response: auditAnchorResponse,
    paged: true,
  })
  anchors(@CurrentTenant() tenant: TenantScope, @Query(new ZodPipe(auditAnchorsQuery)) query: AuditAnchorsQuery) {
    return this.audit.anchors(tenant, query);
  }

  @Post('exports')
  @Allow('tenant:audit:export')
  @ApiRoute({
    tag: TAG,
    summary: 'Request an export job (CSV or JSONL file with SHA-256 and manifest, written by the audit worker)',
    status: 202,
    body: createAuditExportRequest,
    response: auditExportResponse,
  })
  requestExport(
    @CurrentTenant() tenant: TenantScope,
    @Body(new ZodPipe(createAuditExportRequest)) body: ParsedCreateAuditExportRequest,
  ) {
    return this.audit.requestExport(tenant, body);
  }

  @Get('exports')
  @Allow('tenant:audit:read')
  @ApiRoute({ tag: TAG, summary: 'Export jobs, newest first', response: auditExportResponse, paged: true })
  listExports(@CurrentTenant() tenant: TenantScope, @Query(new ZodPipe(pageQuery)) query: PageQuery) {
    return this.audit.listExports(tenant, query);
  }

  @Get('exports/:exportId')
  @Allow('tenant:audit:read')
  @ApiRoute({ tag: TAG, summary: 'One export job: status, row count, SHA-256, manifest', response: auditExportResponse })
  getExport(@CurrentTenant() tenant: TenantScope, @Param('exportId', IdParamPipe) id: string) {
    return this.audit.getExport(tenant, id);
  }

  @Post('exports/:exportId/cancel')
  @Allow('tenant:audit:export')
  @ApiRoute({
    tag: TAG,
    summary: 'Cancel a queued or running export (the worker stops before its next page and removes what it wrote); 409 otherwise',
    status: 200,
    response: auditExportResponse,
  })
  cancelExport(@CurrentTenant() tenant: TenantScope, @Param('exportId', IdParamPipe) id: string) {
    return this.audit.cancelExport(tenant, id);
  }

  @Get('exports/:exportId/download')
  @Allow('tenant:audit:export')
  @ApiRoute({ tag: TAG, summary: "Download a completed export's file (streamed; Repr-Digest carries its SHA-256)" })
  async download(
    @CurrentTenant() tenant: TenantScope,
    @Param('exportId', IdParamPipe) id: string,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<StreamableFile> {
    return sendFile(reply, await this.audit.download(tenant, id));
  }

  @Get('exports/:exportId/manifest')
  @Allow('tenant:audit:export')
  @ApiRoute({ tag: TAG, summary: "A completed export's manifest, for offline verification with `npm run audit:verify`" })
  async manifest(
    @CurrentTenant() tenant: TenantScope,
    @Param('exportId', IdParamPipe) id: string,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<unknown> {
    const { fileName, manifest } = await this.audit.exportManifest(tenant, id);
    reply.header('content-disposition', `attachment; filename="${fileName}"`);
    return manifest;
  }
}
