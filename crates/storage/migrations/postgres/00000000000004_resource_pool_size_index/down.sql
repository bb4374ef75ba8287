DROP INDEX resource_pool_size;
