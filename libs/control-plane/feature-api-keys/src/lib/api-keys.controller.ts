import { Body, Controller, Get, Param, Post, Query } from '@nestjs/common';
import {
  apiKeyResponse,
  createApiKeyRequest,
  createdApiKeyResponse,
  pageQuery,
  type CreateApiKeyRequest,
  type PageQuery,
} from '@portcullis/contracts/api';
import { Allow, CurrentTenant, type TenantScope } from '@portcullis/control-plane/auth';
import { ApiRoute, IdParamPipe, ZodPipe } from '@portcullis/control-plane/http';
import { ApiKeysService } from './api-keys.service';

const TAG = 'API keys';

@Controller('api/v1/tenants/:tenantId/api-keys')
export class ApiKeysController {
  constructor(private readonly apiKeys: ApiKeysService) {}

  @Get()
  @Allow('tenant:api-keys:read')
  @ApiRoute({ tag: TAG, summary: 'List API keys (display prefix only)', response: apiKeyResponse, paged: true })
  list(@CurrentTenant() tenant: TenantScope, @Query(new ZodPipe(pageQuery)) query: PageQuery) {
    return this.apiKeys.list(tenant, query);
  }

  @Post()
  @Allow('tenant:api-keys:write')
  @ApiRoute({ tag: TAG, summary: 'Create an API key for an agent client: the secret is in this response only', status: 201, body: createApiKeyRequest, response: createdApiKeyResponse, conflicts: true })
  create(@CurrentTenant() tenant: TenantScope, @Body(new ZodPipe(createApiKeyRequest)) body: CreateApiKeyRequest) {
    return this.apiKeys.create(tenant, body);
  }

  @Post(':apiKeyId/revoke')
  @Allow('tenant:api-keys:revoke')
  @ApiRoute({ tag: TAG, summary: 'Revoke an API key (idempotent)', response: apiKeyResponse })
  revoke(@CurrentTenant() tenant: TenantScope, @Param('apiKeyId', IdParamPipe) id: string) {
    return this.apiKeys.revoke(tenant, id);
  }
}
