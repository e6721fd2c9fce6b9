using Rstmem.Model.Files;

namespace Rstmem.Tests.Model;

/// <summary>The model's file table: chains through the files themselves, found by the descriptor of the model's watch on each.</summary>
public sealed class FileTableTests
{
    private sealed class File(long watch) : ModelFile(null!)
    {
        public long Made { get; } = watch;

        public File Added(FileTable table)
        {
            Watch = Made;
            table.Add(this);
            return this;
        }
    }

    [Fact]
    public void Files_are_found_by_watch_and_grow_the_buckets_past_one_file_per_bucket()
    {
        var table = new FileTable();
        int initial = table.BucketCount;
        List<File> files = [];
        for (long watch = 1; watch <= 10_000; watch++)
        {
            files.Add(new File(watch).Added(table));
        }

        Assert.Equal(10_000, table.Count);
        Assert.True(table.BucketCount >= table.Count, $"{table.BucketCount} buckets for {table.Count} files");
        Assert.True(table.BucketCount > initial);
        Assert.Equal(0, table.BucketCount & (table.BucketCount - 1));
        Assert.All(files, file => Assert.Same(file, table.Find(file.Watch)));
        Assert.Null(table.Find(10_001));
        Assert.Null(table.Find(0));
    }

    [Fact]
    public void Remove_takes_out_that_file_only_and_the_rest_of_its_chain_stays()
    {
        var table = new FileTable();
        List<File> files = [];
        for (long watch = 1; watch <= 1_000; watch++)
        {
            files.Add(new File(watch).Added(table));
        }

        // Every other file, from chains of every length: what is left is still found.
        for (int i = 0; i < files.Count; i += 2)
        {
            Assert.True(table.Remove(files[i]));
            Assert.False(table.Remove(files[i]));
            Assert.Null(table.Find(files[i].Watch));
        }

        Assert.Equal(500, table.Count);
        for (int i = 1; i < files.Count; i += 2)
        {
            Assert.Same(files[i], table.Find(files[i].Watch));
        }
    }

    [Fact]
    public void A_new_file_with_an_old_watch_replaces_it_and_the_old_one_can_no_longer_remove_it()
    {
        // A watch descriptor comes back once the cyclic allocator wraps; the model may learn of the old file's eviction late.
        var table = new FileTable();
        File old = new File(7).Added(table);
        File reused = new File(7).Added(table);

        Assert.Equal(1, table.Count);
        Assert.Same(reused, table.Find(7));
        Assert.False(table.Remove(old));
        Assert.Same(reused, table.Find(7));
        Assert.True(table.Remove(reused));
        Assert.Equal(0, table.Count);

        // A removed file can be added again (its chain link was cleared).
        old.Added(table);
        Assert.Same(old, table.Find(old.Watch));
        Assert.Throws<InvalidOperationException>(() => table.Add(old));
        Assert.Same(old, table.Find(old.Watch)); // and it is still there
        Assert.Equal(1, table.Count);
    }
}
