-- The catalog. Prices are in cents: exact, and the same integer type on
-- SQLite and PostgreSQL (this file serves both).
CREATE TABLE products (
    id          BIGINT  NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    price_cents BIGINT  NOT NULL,
    category    TEXT    NOT NULL,
    stock       BIGINT  NOT NULL
);

-- Listing by category, in id order.
CREATE INDEX products_category_id ON products (category, id);

-- The catalog the service started with (24 products in 5 categories).
INSERT INTO products (id, name, price_cents, category, stock) VALUES
    (1, 'Wireless Mouse', 2499, 'electronics', 120),
    (2, 'Mechanical Keyboard', 8900, 'electronics', 45),
    (3, '27" Monitor', 22950, 'electronics', 18),
    (4, 'USB-C Hub', 3990, 'electronics', 75),
    (5, 'Noise-Cancelling Headphones', 17900, 'electronics', 30),
    (6, 'Designing Data-Intensive Applications', 4200, 'books', 60),
    (7, 'The Rust Programming Language', 3995, 'books', 85),
    (8, 'Distributed Systems Observability', 2999, 'books', 25),
    (9, 'Site Reliability Engineering', 4450, 'books', 40),
    (10, 'Zero To Production In Rust', 4900, 'books', 55),
    (11, 'Pour-Over Coffee Set', 3400, 'home', 22),
    (12, 'Cast Iron Skillet', 2775, 'home', 38),
    (13, 'Desk Lamp', 3120, 'home', 64),
    (14, 'Linen Throw Blanket', 5800, 'home', 12),
    (15, 'Bamboo Cutting Board', 1950, 'home', 90),
    (16, 'Trail Running Shoes', 11900, 'sports', 26),
    (17, 'Yoga Mat', 2500, 'sports', 70),
    (18, 'Adjustable Dumbbells', 19900, 'sports', 8),
    (19, 'Water Bottle 1L', 1499, 'sports', 150),
    (20, 'Cycling Helmet', 6400, 'sports', 19),
    (21, 'Single-Origin Coffee Beans', 1650, 'grocery', 200),
    (22, 'Matcha Powder', 2200, 'grocery', 47),
    (23, 'Dark Chocolate 85%', 425, 'grocery', 310),
    (24, 'Olive Oil 750ml', 1280, 'grocery', 0);
