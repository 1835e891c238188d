import { Module, type DynamicModule } from '@nestjs/common';
import { PoliciesModule } from '@portcullis/control-plane/feature-policies';
import { UpstreamsController } from './upstreams.controller';
import { UPSTREAMS_OPTIONS, type UpstreamsOptions } from './upstreams.options';
import { UpstreamsRepository } from './upstreams.repository';
import { UpstreamsService } from './upstreams.service';

@Module({})
export class UpstreamsModule {
  static forRoot(options: UpstreamsOptions): DynamicModule {
    return {
      module: UpstreamsModule,
      imports: [PoliciesModule],
      controllers: [UpstreamsController],
      providers: [{ provide: UPSTREAMS_OPTIONS, useValue: options }, UpstreamsRepository, UpstreamsService],
    };
  }
}
