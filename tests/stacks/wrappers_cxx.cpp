// C++ leaks behind wrappers: operator new in a helper, std::vector growth,
// std::string storage, new[] in a helper. Each is credited to the line marked
// LEAK-... of the user's function; prints "LEAK <marker> <blocks> <bytes>"
// with the program's own count. Built -O0 -g so no call is inlined.
#include <cstdio>
#include <string>
#include <vector>

struct Node {
    Node *next;
    long payload[5];
};

static std::vector<void *> *keep;

static Node *make_node()
{
    return new Node(); // LEAK-NODE
}

static char *make_buffer(std::size_t n)
{
    return new char[n]; // LEAK-BUFFER
}

static void report(const char *marker, int blocks, std::size_t bytes)
{
    std::printf("LEAK %s %d %zu\n", marker, blocks, bytes);
}

void build_list()
{
    Node *head = nullptr;
    for (int i = 0; i < 4; i++) {
        Node *n = make_node();
        n->next = head;
        head = n;
    }
    keep->push_back(head);
    report("LEAK-NODE", 4, 4 * sizeof(Node));
}

void fill_vector()
{
    std::vector<int> *v = new std::vector<int>(); // LEAK-VECTOR-OBJ
    for (int i = 0; i < 100; i++)
        v->push_back(i); // LEAK-VECTOR-GROWTH
    keep->push_back(v);
    report("LEAK-VECTOR-OBJ", 1, sizeof(std::vector<int>));
    report("LEAK-VECTOR-GROWTH", 1, v->capacity() * sizeof(int));
}

void keep_buffer()
{
    keep->push_back(make_buffer(300));
    report("LEAK-BUFFER", 1, 300);
}

void keep_string()
{
    std::string *s = new std::string(); // LEAK-STRING-OBJ
    s->assign(100, 'x'); // LEAK-STRING-DATA
    keep->push_back(s);
    report("LEAK-STRING-OBJ", 1, sizeof(std::string));
    report("LEAK-STRING-DATA", 1, s->capacity() + 1);
}

int main()
{
    std::vector<void *> held;
    held.reserve(16);
    keep = &held;            // the holder is freed at exit; what it points at leaks
    for (int i = 0; i < 1000; i++)
        delete make_node();  // freed: no row
    build_list();
    fill_vector();
    keep_buffer();
    keep_string();
    return 0;
}
