using Rstmem.Interop;
using Rstmem.Model.Files;

namespace Rstmem.Tests.Model;

/// <summary>The model's file table: chains through the files themselves, found by each memfd's (device, inode).</summary>
public sealed class FileTableTests
{
    private sealed class File(long inode) : ModelFile(null!)
    {
        public FileIdentity Made { get; } = Key(inode);

        public File Added(FileTable table)
        {
            Identity = Made;
            table.Add(this);
            return this;
        }
    }

    [Fact]
    public void Files_are_found_by_identity_and_grow_the_buckets_past_one_file_per_bucket()
    {
        var table = new FileTable();
        int initial = table.BucketCount;
        List<File> files = [];
        for (long inode = 1; inode <= 10_000; inode++)
        {
            files.Add(new File(inode).Added(table));
        }

        Assert.Equal(10_000, table.Count);
        Assert.True(table.BucketCount >= table.Count, $"{table.BucketCount} buckets for {table.Count} files");
        Assert.True(table.BucketCount > initial);
        Assert.Equal(0, table.BucketCount & (table.BucketCount - 1));
        Assert.All(files, file => Assert.Same(file, table.Find(file.Identity)));
        Assert.Null(table.Find(Key(10_001)));
        Assert.Null(table.Find(Key(0)));
    }

    [Fact]
    public void Remove_takes_out_that_file_only_and_the_rest_of_its_chain_stays()
    {
        var table = new FileTable();
        List<File> files = [];
        for (long inode = 1; inode <= 1_000; inode++)
        {
            files.Add(new File(inode).Added(table));
        }

        // Every other file, from chains of every length: what is left is still found.
        for (int i = 0; i < files.Count; i += 2)
        {
            Assert.True(table.Remove(files[i]));
            Assert.False(table.Remove(files[i]));
            Assert.Null(table.Find(files[i].Identity));
        }

        Assert.Equal(500, table.Count);
        for (int i = 1; i < files.Count; i += 2)
        {
            Assert.Same(files[i], table.Find(files[i].Identity));
        }
    }

    [Fact]
    public void A_new_file_with_an_identity_in_the_table_replaces_it_and_the_old_one_can_no_longer_remove_it()
    {
        // Not expected (a memfd's inode number comes from a 64-bit counter), but the table does not
        // keep two files under one identity, and the one it dropped cannot take the other out.
        var table = new FileTable();
        File old = new File(7).Added(table);
        File reused = new File(7).Added(table);

        Assert.Equal(1, table.Count);
        Assert.Same(reused, table.Find(Key(7)));
        Assert.False(table.Remove(old));
        Assert.Same(reused, table.Find(Key(7)));
        Assert.True(table.Remove(reused));
        Assert.Equal(0, table.Count);

        // A removed file can be added again (its chain link was cleared).
        old.Added(table);
        Assert.Same(old, table.Find(old.Identity));
        Assert.Throws<InvalidOperationException>(() => table.Add(old));
        Assert.Same(old, table.Find(old.Identity)); // and it is still there
        Assert.Equal(1, table.Count);
    }

    [Fact]
    public void The_same_inode_number_on_another_device_is_another_file()
    {
        var table = new FileTable();
        File memfd = new File(42).Added(table);

        Assert.Same(memfd, table.Find(Key(42)));
        Assert.Null(table.Find(new FileIdentity(8, 1, 42))); // a file of another file system with the same number
    }

    /// <summary>An identity on the device the tests' files share.</summary>
    private static FileIdentity Key(long inode) => new(0, 1, (ulong)inode);
}
