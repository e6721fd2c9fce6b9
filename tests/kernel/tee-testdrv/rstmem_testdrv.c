// SPDX-License-Identifier: GPL-2.0
/*
 * rstmem-testdrv: the smallest TEE backend that makes mainline's protected
 * DMA heaps real, for rstmemd's test kernel under qemu.
 *
 * What it is: a TEE device (/dev/teeN) with get_version, open and release,
 * and one static protected-memory pool per use case, created with the
 * kernel's own tee_protmem_static_pool_alloc() and handed to
 * tee_device_register_dma_heap(). Everything userspace touches is upstream
 * code: drivers/tee/tee_heap.c exports /dev/dma_heap/protected,secure-video,
 * protected,trusted-ui and protected,secure-video-record (first-fit gen_pool,
 * no mmap, ENOMEM when full), and drivers/tee/tee_core.c + tee_shm.c serve
 * TEE_IOC_SHM_REGISTER_FD on those buffers.
 *
 * What it is not: there is no secure world. The pools are ordinary RAM
 * allocated at boot, standing in for memory a firewall would make
 * inaccessible to Linux; nothing is protected, no session can be opened
 * (open_session is absent: TEE_IOC_OPEN_SESSION gives EINVAL) and there is
 * no shared-memory pool (TEE_IOC_SHM_ALLOC gives EINVAL).
 *
 * TEE_IOC_VERSION reports what the OP-TEE driver does on a board without
 * dynamic shared memory (impl_id OPTEE, impl_caps TZ, gen_caps GP |
 * MEMREF_NULL), the same values rstmemd's in-process kernel model reports,
 * since a mainline OP-TEE is the device a daemon meets in the field.
 */
#include <linux/err.h>
#include <linux/gfp.h>
#include <linux/init.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/sizes.h>
#include <linux/tee_core.h>

#define POOL_SIZE SZ_4M	/* per use case; order 10 = MAX_PAGE_ORDER on x86 */

static void testdrv_get_version(struct tee_device *teedev,
				struct tee_ioctl_version_data *vers)
{
	vers->impl_id = TEE_IMPL_ID_OPTEE;
	vers->impl_caps = TEE_OPTEE_CAP_TZ;
	vers->gen_caps = TEE_GEN_CAP_GP | TEE_GEN_CAP_MEMREF_NULL;
}

static int testdrv_open(struct tee_context *ctx)
{
	return 0;
}

static void testdrv_release(struct tee_context *ctx)
{
}

static const struct tee_driver_ops testdrv_ops = {
	.get_version = testdrv_get_version,
	.open = testdrv_open,
	.release = testdrv_release,
};

static const struct tee_desc testdrv_desc = {
	.name = "rstmem-testdrv",
	.ops = &testdrv_ops,
	.owner = THIS_MODULE,
};

static const enum tee_dma_heap_id testdrv_heaps[] = {
	TEE_DMA_HEAP_SECURE_VIDEO_PLAY,
	TEE_DMA_HEAP_TRUSTED_UI,
	TEE_DMA_HEAP_SECURE_VIDEO_RECORD,
};

static int __init testdrv_add_heap(struct tee_device *teedev,
				   enum tee_dma_heap_id id)
{
	struct tee_protmem_pool *pool;
	struct page *pages;
	int rc;

	/* Physically contiguous, page aligned: what a static carve-out is. */
	pages = alloc_pages(GFP_KERNEL | __GFP_ZERO, get_order(POOL_SIZE));
	if (!pages)
		return -ENOMEM;

	pool = tee_protmem_static_pool_alloc(page_to_phys(pages), POOL_SIZE);
	if (IS_ERR(pool)) {
		__free_pages(pages, get_order(POOL_SIZE));
		return PTR_ERR(pool);
	}

	/* On success the heap owns the pool; its pages stay for the uptime. */
	rc = tee_device_register_dma_heap(teedev, id, pool);
	if (rc) {
		pool->ops->destroy_pool(pool);
		__free_pages(pages, get_order(POOL_SIZE));
	}
	return rc;
}

static int __init testdrv_init(void)
{
	struct tee_device *teedev;
	unsigned int i;
	int rc;

	teedev = tee_device_alloc(&testdrv_desc, NULL, NULL, NULL);
	if (IS_ERR(teedev))
		return PTR_ERR(teedev);

	rc = tee_device_register(teedev);
	if (rc)
		goto err;

	for (i = 0; i < ARRAY_SIZE(testdrv_heaps); i++) {
		rc = testdrv_add_heap(teedev, testdrv_heaps[i]);
		if (rc)
			goto err;
	}

	pr_info("rstmem-testdrv: %s with %zu protected heaps of %u KiB (ordinary RAM, no secure world)\n",
		dev_name(&teedev->dev), ARRAY_SIZE(testdrv_heaps), POOL_SIZE / SZ_1K);
	return 0;

err:
	pr_err("rstmem-testdrv: init failed: %d\n", rc);
	tee_device_put_all_dma_heaps(teedev);
	tee_device_unregister(teedev);
	return rc;
}
device_initcall(testdrv_init);
