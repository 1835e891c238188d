import type { INestApplication } from '@nestjs/common';
import { DocumentBuilder, SwaggerModule, type OpenAPIObject } from '@nestjs/swagger';

export function buildOpenApiDocument(app: INestApplication): OpenAPIObject {
  return SwaggerModule.createDocument(
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
}

/** Serves the document at /api/docs (UI) and /api/docs/openapi.json. */
export function setupOpenApi(app: INestApplication): OpenAPIObject {
  const document = buildOpenApiDocument(app);
  SwaggerModule.setup('api/docs', app, document, { jsonDocumentUrl: 'api/docs/openapi.json' });
  return document;
}
