import { Body, Controller, Get, Param, Patch, Post, Query } from '@nestjs/common';
import {
  createTenantRequest,
  pageQuery,
  tenantListItem,
  tenantResponse,
  updateTenantRequest,
  type CreateTenantRequest,
  type PageQuery,
  type UpdateTenantRequest,
} from '@portcullis/contracts/api';
import { Allow, CurrentPrincipal, CurrentTenant, type Principal, type TenantScope } from '@portcullis/control-plane/auth';
import { ApiRoute, ZodPipe } from '@portcullis/control-plane/http';
import { TenantsService } from './tenants.service';

const TAG = 'tenants';

@Controller('api/v1/tenants')
export class TenantsController {
  constructor(private readonly tenants: TenantsService) {}

  @Post()
  @Allow('platform:tenants:write')
  @ApiRoute({ tag: TAG, summary: 'Create a tenant (platform admins)', status: 201, body: createTenantRequest, response: tenantResponse, conflicts: true })
  create(@CurrentPrincipal() actor: Principal, @Body(new ZodPipe(createTenantRequest)) body: CreateTenantRequest) {
    return this.tenants.create(actor, body);
  }

  @Get()
  @Allow('user:tenants:read')
  @ApiRoute({ tag: TAG, summary: 'Tenants you belong to (every tenant for platform admins)', response: tenantListItem, paged: true })
  list(@CurrentPrincipal() actor: Principal, @Query(new ZodPipe(pageQuery)) query: PageQuery) {
    return this.tenants.list(actor, query);
  }

  @Patch(':tenantId')
  @Allow('platform:tenants:write')
  @ApiRoute({ tag: TAG, summary: 'Rename, suspend or reactivate a tenant (platform admins)', body: updateTenantRequest, response: tenantResponse })
  update(@CurrentPrincipal() actor: Principal, @Param('tenantId') tenantId: string, @Body(new ZodPipe(updateTenantRequest)) body: UpdateTenantRequest) {
    return this.tenants.update(actor, tenantId, body);
  }

  @Get(':tenantId')
  @Allow('tenant:read')
  @ApiRoute({ tag: TAG, summary: 'Get a tenant you belong to', response: tenantListItem })
  get(@CurrentTenant() tenant: TenantScope) {
    return this.tenants.get(tenant);
  }
}
