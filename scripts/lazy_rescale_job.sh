# The job behind kernels/results/probes/h100-2026-11-23-lazy-*.json (run at the commit that added LAZY_RESCALE)
export PYTHONPATH=.
nvidia-smi --query-gpu=name,clocks.sm,temperature.gpu --format=csv
python - <<'PY'
import torch
from kernels import attention as A
import kernels.attention as attention
torch.manual_seed(0)
for n,d,causal,dt,bm,bn,w,s,sp,lv in [(1000,128,True,torch.float16,128,128,8,3,1,False),(1000,64,False,torch.bfloat16,128,128,4,2,2,True),(777,128,False,torch.float16,128,64,4,2,1,False)]:
    q,k,v=(torch.randn(2,4,n,d,device="cuda",dtype=dt) for _ in range(3))
    k[:,:,600:]*=5
    ref=torch.nn.functional.scaled_dot_product_attention(q.double(),k.double(),v.double(),is_causal=causal)
    for lazy in (False,True):
        o,_=attention._launch(q,k,v,causal,None,bm,bn,num_warps=w,num_stages=s,use_tma=True,split=sp,late_v=lv,lazy_rescale=lazy)
        print(n,d,causal,dt,lazy,(o.double()-ref).abs().max().item(),flush=True)
PY
SHAPES=8192x128x0,8192x128x1,16384x128x0 CONFIGS=128x128w8s3,128x128w8s3Z MODES=tma,tma+ws NAME=lazy-d128 python scripts/attn_variants.py 2>&1 | grep -v Warn | tail -14
SHAPES=8192x64x0,8192x64x1 CONFIGS=128x128w4s2p2L,128x128w4s2p2LZ,64x128w4s2,64x128w4s2Z MODES=tma NAME=lazy-d64 python scripts/attn_variants.py 2>&1 | grep -v Warn | tail -12
SHAPES=2048x128x1,2048x64x0 CONFIGS=128x128w8s3,128x128w8s3Z,128x64w8s3,128x64w8s3Z,64x64w4s3,64x64w4s3Z MODES=ptr NAME=lazy-2048 python scripts/attn_variants.py 2>&1 | grep -v Warn | tail -14
