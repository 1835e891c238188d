import type { INestApplication } from '@nestjs/common';
import { DocumentBuilder, SwaggerModule, type OpenAPIObject } from '@nestjs/swagger';
import { allowedWhileSuspended, isTenantPermission, PERMISSIONS, type Permission } from '@portcullis/control-plane/auth';

type Operation = { 'x-portcullis-permission'?: string; responses?: Record<string, { description?: string; content?: unknown }> };

const SUSPENDED = 'The tenant is suspended: changes to it are refused until it is resumed.';
const SUSPENDED_TOO = 'Or the tenant is suspended: changes to it are refused until it is resumed.';
const UNAVAILABLE = 'A dependency (the database or Redis) is unavailable for now: try again later.';

/**
 * The answers every route may give whatever its own contract says: 409 for a change to a suspended tenant (the access
 * guard refuses every tenant permission but reads, audit exports and key revocations), 503 while a dependency is out.
 * Both are problem+json, like the 404 every route documents.
 */
function withCommonAnswers(document: OpenAPIObject): OpenAPIObject {
  for (const operations of Object.values(document.paths)) {
    for (const operation of Object.values(operations as Record<string, Operation>)) {
      const responses = operation.responses;
      if (responses === undefined) continue;
      const problem = responses['404']?.content;
      const permission = operation['x-portcullis-permission'];
      if (permission !== undefined && permission in PERMISSIONS && isTenantPermission(permission as Permission) && !allowedWhileSuspended(permission as Permission)) {
        const conflict = responses['409'];
        responses['409'] = conflict ? { ...conflict, description: `${conflict.description ?? ''} ${SUSPENDED_TOO}`.trim() } : { description: SUSPENDED, content: problem };
      }
      responses['503'] ??= { description: UNAVAILABLE, content: problem };
    }
  }
  return document;
}

export function buildOpenApiDocument(app: INestApplication): OpenAPIObject {
  const document = SwaggerModule.createDocument(
    app,
    new DocumentBuilder()
      .setTitle('Portcullis control plane')
      .setDescription(
        'Tenants, members, upstreams, agent clients and API keys. Authenticate with a short-lived bearer JWT; each ' +
          'operation names the permission it needs in `x-portcullis-permission`. Errors are RFC 9457 problem+json.',
      )
      .setVersion('v1')
      .addBearerAuth()
      .build(),
  );
  return withCommonAnswers(document);
}

/** Serves the document at /api/docs (UI) and /api/docs/openapi.json. */
export function setupOpenApi(app: INestApplication): OpenAPIObject {
  const document = buildOpenApiDocument(app);
  SwaggerModule.setup('api/docs', app, document, { jsonDocumentUrl: 'api/docs/openapi.json' });
  return document;
}
